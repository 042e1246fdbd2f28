"""Value structure of numeric columns: point masses and value grids, learned at ingest.

Real tables hold values a smooth density never produces: exact zeros and other codes
(0, -1, 999) held by many rows, amounts on a grid (multiples of 10 below 1,000 and of 50
above), integers, fixed decimals. A tree-based real-vs-synthetic classifier finds these
at once. The ingest stage learns, per ``continuous`` or ``integer`` column of the train
split, a *structure* stored in the schema (``ColumnSpec.structure``, JSON):

* ``point_masses``: the values that hold at least ``share`` (``data.point_mass_share``,
  default 1%) of the column's non-missing train values, are seen at least ``min_count``
  times (``data.min_level_count``, default 10: a point mass is published like a category
  level, so the same rarity rule applies) and at least :data:`MASS_EXCESS` (3) times as
  often as either neighbour on the column's finest grid (``x ± 10^-decimals``; a spike,
  such as 0 or a round 1,000, not just a common age), the ``max_masses`` (10) heaviest,
  with their ``point_mass_shares``. A column with at most ``max_masses`` distinct values
  (counts of bedrooms, codes) skips the neighbour rule: each frequent value is a mass. The generator chooses them as discrete states
  (:mod:`synthgen.transformers.prepare`).
* ``decimals``: the fewest decimal places (0 to :data:`MAX_DECIMALS`) that hold every
  other value (within float error); ``None``: no grid (more decimals than that).
* ``bands``: how round the other values are, per magnitude band. With the unit
  ``u = 10^-decimals``, the bands split each decade ``[10^k u, 10^(k+1) u)`` into
  ``[1, 2)``, ``[2, 5)`` and ``[5, 10)`` times ``10^k u`` (band ``3k``, ``3k+1``,
  ``3k+2``; band 0 also holds 0). A value's *roundness level* ``j`` is the largest step
  of the chain ``u, 5u, 10u, 50u, 100u, ...`` (step ``j`` is
  ``{1, 5}[j % 2] * 10^(j // 2) * u``) that divides it, at most ``5 * 10^k u`` in decade
  ``k``. ``bands[b]`` lists the share of each
  level among the band's values. The chain is nested (each step divides the next), so
  "exactly level ``j``" is well defined, and a grid whose step changes with magnitude
  (10 below 1,000, 50 above) is the shares of two bands.

On output (:func:`snap`) each generated value off the point masses draws a grid step for
its band and is rounded to the lower or the upper multiple of it at random, in proportion
to closeness. The step shares are solved so that the output has the band's roundness
shares (:func:`draw_shares`: rounding to a grid of 10 also lands on multiples of 50 one
time in five); steps above half the band's lower edge are used only where the band's
values need them (:func:`coarsest_step_level`: 5 bedrooms are common, not round), and
the random rounding keeps the distribution (the expected value is
unchanged) where plain rounding to a coarse grid would pile values up on its points.

* ``at_most``: another numeric column this one never exceeds in any train row (a loan
  amount and the price it pays for, years at a job and age), found by
  :func:`learn_orderings` where the order is not implied by the ranges: pairing the two
  columns' values at random would break it in at least :data:`ORDER_CHANCE` (1%) of
  rows. Both columns must be non-negative (the upper one positive); each column has at
  most one such bound and a bounding column is not itself bounded. The preparer then
  models the *ratio* to the bound, so every generated row keeps the order.

A discrete column can have a structure too: ``determined_by``, when another column fixes
its value in every train row (no degree exactly when schooling is under 12 years), found
by :func:`learn_determinations`: the other column is a category with at least 3 levels,
or a number with at most one distinct value per 20 rows whose sorted values split into
at most :data:`MAX_RUNS` runs of one level each (stored as ``thresholds`` between runs
and the runs' ``levels``; a category's ``mapping``). On output the column is set from the
other one, so no row breaks the rule. (Not used under differential privacy.)

``data.structure`` overrides a column: ``off`` (no structure), or
``{point_masses: [...], decimals: d, at_most: column}`` (any of the keys; shares are then
learned for the declared values). Under differential privacy the structure is declared public like the
bounds and the category sets; only :data:`PUBLIC_KEYS` are used there - the point-mass
values, the unit and the ``at_most`` column, no shares (:func:`public_structure`; the
privacy ledger lists them column by column, and the schema kept with a DP model has
nothing else).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synthgen.errors import ConfigError

POINT_MASS_SHARE = 0.01  # default data.point_mass_share
MAX_POINT_MASSES = 10  # heaviest point masses kept per column (each widens the model by one)
MASS_EXCESS = 3.0  # a point mass is seen at least this many times as often as either grid neighbour
MAX_DECIMALS = 6  # more decimal places than this: no grid
MAX_UNITS = 1e15  # |x| / unit above this: no grid (integer precision of float64)


def step_units(level: np.ndarray | int) -> np.ndarray:
    """Step of roundness ``level`` in units: 1, 5, 10, 50, 100, ..."""
    level = np.asarray(level, dtype=np.int64)
    return np.where(level % 2 == 0, 1, 5) * 10 ** (level // 2)


def decade_of(units: np.ndarray) -> np.ndarray:
    """``floor(log10(|x| / u))``, 0 below 10."""
    with np.errstate(divide="ignore"):
        return np.maximum(np.floor(np.log10(np.maximum(np.abs(units), 1.0))), 0).astype(np.int64)


def band_of(units: np.ndarray) -> np.ndarray:
    """Magnitude band of ``|x| / u``: ``3 * decade + (0, 1, 2)`` for a leading part in
    ``[1, 2)``, ``[2, 5)``, ``[5, 10)`` (band 0 also holds 0)."""
    a = np.maximum(np.abs(np.asarray(units, dtype=float)), 1.0)
    decade = decade_of(a)
    lead = a / 10.0**decade
    return 3 * decade + np.where(lead < 2, 0, np.where(lead < 5, 1, 2))


def band_edges(band: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[low, high)`` of each band, in units."""
    decade, sub = np.divmod(np.asarray(band, dtype=np.int64), 3)
    low = np.array([1.0, 2.0, 5.0])[sub] * 10.0**decade
    return np.where(band == 0, 0.0, low), np.array([2.0, 5.0, 10.0])[sub] * 10.0**decade


def top_level(band: np.ndarray) -> np.ndarray:
    """The coarsest roundness level a band can hold (step ``5 * 10^decade``)."""
    return 2 * (np.asarray(band, dtype=np.int64) // 3) + 1


def grid_decimals(values: np.ndarray) -> int | None:
    """The fewest decimal places (at most :data:`MAX_DECIMALS`) holding every value."""
    if not len(values):
        return None
    for d in range(MAX_DECIMALS + 1):
        scaled = values * 10.0**d
        if np.abs(scaled).max() > MAX_UNITS:
            return None
        if np.all(np.abs(scaled - np.round(scaled)) <= 1e-6 * np.maximum(1.0, np.abs(scaled))):
            return d
    return None


def roundness(units: np.ndarray) -> np.ndarray:
    """Exact roundness level of whole numbers of units (see the module docstring)."""
    k = np.abs(np.round(units)).astype(np.int64)
    top = top_level(band_of(k.astype(float)))
    level = np.zeros(len(k), dtype=np.int64)
    for j in range(1, int(top.max(initial=0)) + 1):
        level = np.where((j <= top) & (k % step_units(j) == 0) & (k > 0), j, level)  # 0 is not "round"
    return level


def coarsest_step_level(band: int) -> int:
    """The coarsest roundness level snapping may use in ``band`` before looking at the
    data: steps of at most half the band's lower edge (so 6.4 bedrooms never jumps to 5 or
    10 because 5 is a common count), level 0 in the lowest bands."""
    low = float(band_edges(np.array([band]))[0][0])
    level = 0
    while step_units(level + 1) <= low / 2:
        level += 1
    return level


def learn_structure(values: pd.Series, *, min_count: int, share: float = POINT_MASS_SHARE,
                    max_masses: int = MAX_POINT_MASSES, declared: dict[str, Any] | None = None
                    ) -> dict[str, Any] | None:
    """The structure of one numeric column's train values (module docstring); ``None``
    when it has no values. ``declared``: a ``data.structure`` entry (its keys win)."""
    present = pd.to_numeric(values, errors="coerce").dropna().astype(float)
    if present.empty:
        return None
    declared = declared or {}
    counts = present.value_counts()
    if "point_masses" in declared:
        masses = [float(v) for v in declared["point_masses"]]
    else:
        heavy = counts[(counts >= min_count) & (counts / len(present) >= share)]
        unit = grid_decimals(present.to_numpy())
        few = len(counts) <= max_masses  # a handful of values (counts, codes): each frequent one is a mass
        if unit is not None and len(heavy) and not few:  # a spike, not just a likely value
            step = 10.0**-unit
            below = counts.reindex(np.round(heavy.index.to_numpy() - step, unit)).fillna(0).to_numpy()
            above = counts.reindex(np.round(heavy.index.to_numpy() + step, unit)).fillna(0).to_numpy()
            heavy = heavy[heavy.to_numpy() >= MASS_EXCESS * np.maximum(below, above)]
        masses = [float(v) for v in heavy.index[:max_masses]]
    mass_shares = [float(counts.get(v, 0)) / len(present) for v in masses]
    rest = present[~present.isin(masses)].to_numpy()
    decimals = declared["decimals"] if "decimals" in declared else grid_decimals(rest)
    bands: dict[str, list[float]] = {}
    if decimals is not None and len(rest):
        units = np.round(rest * 10.0**decimals)
        band, level = band_of(units), roundness(units)
        for b in np.unique(band):
            levels = np.bincount(level[band == b], minlength=int(top_level(b)) + 1)
            bands[str(int(b))] = [round(float(c) / float(levels.sum()), 6) for c in levels]
    return {"point_masses": masses, "point_mass_shares": [round(s, 6) for s in mass_shares],
            "decimals": decimals, "bands": bands}


ORDER_CHANCE = 0.01  # an order that random pairing breaks this often is a learned constraint


def learn_orderings(train: pd.DataFrame, columns: list[str], seed: int = 0) -> dict[str, str]:
    """``{column: the column it never exceeds}`` (module docstring, ``at_most``)."""
    values = {c: pd.to_numeric(train[c], errors="coerce").to_numpy(dtype=float) for c in columns}
    rng = np.random.default_rng(seed)
    found = []
    for low in columns:
        for high in columns:
            a, b = values[low], values[high]
            both = ~np.isnan(a) & ~np.isnan(b)
            if low == high or both.sum() < 20 or np.nanmin(a) < 0 or np.nanmin(b) <= 0:
                continue
            if np.any(a[both] > b[both]):
                continue
            chance = float(np.mean(a[both] > rng.permutation(b[both])))
            if chance >= ORDER_CHANCE:
                found.append((chance, low, high))
    bound: dict[str, str] = {}
    for _, low, high in sorted(found, reverse=True):
        if low not in bound and high not in bound and low not in bound.values():
            bound[low] = high
    return bound


MAX_RUNS = 4  # a number determines a category through at most this many runs of one level


def learn_determinations(train: pd.DataFrame, discrete: list[str], numeric: list[str],
                         text: dict[str, pd.Series]) -> dict[str, dict[str, Any]]:
    """``{column: rule}`` for discrete columns another column determines (module
    docstring). ``text``: every discrete column's values as prepared text (missing as a
    level of its own, ignored here); ``numeric``: the numeric columns."""
    rules: dict[str, dict[str, Any]] = {}
    for target in discrete:
        y = text[target]
        for source in [c for c in numeric + discrete if c != target and c not in rules]:
            rule = _numeric_rule(train[source], y) if source in numeric else _level_rule(text[source], y)
            if rule is not None:
                rules[target] = {"determined_by": source, **rule}
                break
    return {t: r for t, r in rules.items() if r["determined_by"] not in rules}  # no chains


def _present(x: pd.Series, y: pd.Series) -> pd.Series:
    return x.notna() & (y != "__nan__")


def _numeric_rule(source: pd.Series, y: pd.Series) -> dict[str, Any] | None:
    x = pd.to_numeric(source, errors="coerce")
    keep = _present(x, y)
    x, y = x[keep].to_numpy(dtype=float), y[keep].to_numpy(dtype=object)
    values = np.unique(x)
    if len(x) < 20 or len(values) < 3 or len(values) > len(x) / 20 or len(set(y)) < 2:
        return None
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    firsts = np.r_[0, np.flatnonzero(np.diff(x)) + 1]
    per_value = [set(y[a:b]) for a, b in zip(firsts, np.r_[firsts[1:], len(x)])]
    if any(len(levels) != 1 for levels in per_value):
        return None
    levels = [next(iter(v)) for v in per_value]
    cuts = [i for i in range(1, len(levels)) if levels[i] != levels[i - 1]]
    if len(cuts) + 1 > MAX_RUNS:
        return None
    return {"thresholds": [float((values[i - 1] + values[i]) / 2) for i in cuts],
            "levels": [levels[0]] + [levels[i] for i in cuts]}


def _level_rule(source: pd.Series, y: pd.Series) -> dict[str, Any] | None:
    keep = (source != "__nan__") & (y != "__nan__")
    if keep.sum() < 20 or source[keep].nunique() < 3 or y[keep].nunique() < 2:
        return None
    per_level = y[keep].groupby(source[keep]).nunique()
    if (per_level != 1).any():
        return None
    return {"mapping": {str(k): v for k, v in y[keep].groupby(source[keep]).first().items()}}


def apply_determination(rule: dict[str, Any], source: pd.Series) -> pd.Series:
    """The determined column's prepared text for each row (None where the rule says
    nothing: a missing or unseen source value). ``source``: the determining column's
    output values (numbers) or prepared text (categories)."""
    if "mapping" in rule:
        return source.astype(str).map(rule["mapping"]).astype(object).where(lambda v: v.notna(), None)
    x = pd.to_numeric(source, errors="coerce").to_numpy(dtype=float)
    runs = np.searchsorted(np.asarray(rule["thresholds"], dtype=float), x, side="right")
    levels = np.asarray(rule["levels"], dtype=object)[np.minimum(runs, len(rule["levels"]) - 1)]
    return pd.Series(np.where(np.isnan(x), None, levels), index=source.index, dtype=object)


PUBLIC_KEYS = ("point_masses", "decimals", "at_most")  # what a DP fit uses (declared public)


def public_structure(structure: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of a structure a differentially private fit uses and declares public: the
    point-mass values, the decimals and the ``at_most`` column (no shares)."""
    if not structure:
        return None
    return {k: structure[k] for k in PUBLIC_KEYS if structure.get(k) not in (None, [])} or None


def check_overrides(overrides: dict[str, Any], kinds: dict[str, str], source: str) -> None:
    """``data.structure`` entries name numeric columns (their form is checked with the
    params, :class:`synthgen.config.DataConfig`).

    Raises:
        ConfigError: naming the column.
    """
    for column in overrides:
        if column not in kinds:
            raise ConfigError(f"data.structure: column {column!r} is not in {source} (columns: {list(kinds)})")
        if kinds[column] in ("categorical", "boolean") and overrides[column] == "off":
            continue  # drops a learned determined_by rule
        if kinds[column] not in ("continuous", "integer"):
            raise ConfigError(f"data.structure: column {column!r} is {kinds[column]}; only continuous and "
                              "integer columns have a value structure (a category takes only 'off')")
        bound = overrides[column].get("at_most") if isinstance(overrides[column], dict) else None
        if bound is not None and kinds.get(bound) not in ("continuous", "integer"):
            raise ConfigError(f"data.structure.{column}.at_most: {bound!r} is not a continuous or integer column")


def level_shares(structure: dict[str, Any], band: int) -> np.ndarray:
    """Roundness-level shares for ``band``: its own, else the nearest learned band's (a
    value the train values never came near takes the grid of the nearest ones), else
    level 0 only."""
    bands = {int(b): np.asarray(v, dtype=float) for b, v in (structure.get("bands") or {}).items()}
    if band in bands:
        shares = bands[band]
    elif bands:
        shares = bands[min(bands, key=lambda b: abs(b - band))]
    else:
        shares = np.ones(1)
    return shares / shares.sum() if shares.sum() > 0 else np.eye(len(shares))[0]


def draw_shares(exact: np.ndarray) -> np.ndarray:
    """Shares of the grids to round to, so that the rounded values have the exact
    roundness shares ``exact``: rounding a smooth value to the grid of step ``s_j`` lands
    on exact level ``i >= j`` with chance ``(s_j / s_i)(1 - s_i / s_{i+1})`` (the top
    level: ``s_j / s_top``); this lower-triangular system is solved for the grid shares
    (negative solutions clipped to 0)."""
    top = len(exact) - 1
    steps = step_units(np.arange(top + 2)).astype(float)
    land = np.zeros((top + 1, top + 1))
    for j in range(top + 1):
        for i in range(j, top + 1):
            land[i, j] = steps[j] / steps[i] * (1.0 if i == top else 1.0 - steps[i] / steps[i + 1])
    grid = np.clip(np.linalg.solve(land, exact), 0.0, None)
    return grid / grid.sum() if grid.sum() > 0 else np.eye(top + 1)[0]


def snap(values: np.ndarray, structure: dict[str, Any], rng: np.random.Generator, *,
         low: Any = None, high: Any = None, shares: bool = True) -> np.ndarray:
    """Generated values (off the point masses) moved onto the learned grid (module
    docstring): each draws a grid step for its band (:func:`draw_shares`) and is rounded
    down or up to a multiple of it at random in proportion to closeness (the expected
    value is kept, and no grid point collects more than its share), never onto a point
    mass or outside ``[low, high]`` when the other neighbour avoids that. ``shares=False``:
    every value takes the unit grid (as under differential privacy). ``low``/``high``:
    scalars or one per value. NaN stays NaN; without ``decimals`` values are returned as
    given."""
    decimals = structure.get("decimals")
    out = np.array(values, dtype=float)
    ok = ~np.isnan(out)
    if decimals is None or not ok.any():
        return out
    unit = 10.0**-decimals
    masses = np.round(np.asarray(structure.get("point_masses") or [], dtype=float) / unit)
    low = np.broadcast_to(-np.inf if low is None else np.asarray(low, dtype=float), out.shape)[ok]
    high = np.broadcast_to(np.inf if high is None else np.asarray(high, dtype=float), out.shape)[ok]
    lo, hi = low / unit - 1e-9, high / unit + 1e-9
    y = out[ok] / unit
    sign = np.where(y < 0, -1.0, 1.0)
    a = np.abs(y)
    band = band_of(a)
    step = np.ones(len(a))
    if shares:
        for b in np.unique(band):
            rows = np.flatnonzero(band == b)
            exact = level_shares(structure, int(b))
            top = max(coarsest_step_level(int(b)), int(np.flatnonzero(exact > 0)[0]))  # a band's own grid stays
            exact = np.r_[exact[:top], exact[top:].sum()]
            grid = draw_shares(exact)
            step[rows] = step_units(rng.choice(len(grid), size=len(rows), p=grid))
    down = np.floor(a / step) * step
    up = down + step
    go_up = rng.random(len(a)) < (a - down) / step

    def bad(m: np.ndarray) -> np.ndarray:
        signed = sign * m
        return np.isin(signed, masses) | (signed < lo) | (signed > hi)

    first = np.where(go_up, up, down)
    other = np.where(go_up, down, up)
    m = np.where(bad(first) & ~bad(other), other, first)
    out[ok] = np.clip(np.round(sign * m * unit, decimals), low, high)
    return out
