"""Statistical fidelity of a synthetic table, as SDMetrics' Quality Report defines it.

The definitions follow SDMetrics (https://docs.sdv.dev/sdmetrics) but are vectorized
numpy/pandas and need no sdmetrics at run time:

* Column shapes: ``KSComplement`` (1 - two-sample Kolmogorov-Smirnov D on the
  non-missing values) for continuous, integer and datetime columns; ``TVComplement``
  (1 - ½ Σ|p_real - p_syn|) for categorical and boolean columns.
* Column pair trends: ``CorrelationSimilarity`` (1 - |ρ_real - ρ_syn| / 2, Pearson on
  the rows where both are present) for two numeric columns; ``ContingencySimilarity``
  (1 - ½ Σ|f_real - f_syn| over the two-way table) otherwise, a numeric column binned
  into 10 bins whose edges are ``np.histogram_bin_edges`` of its real values (outer
  edges open, missing values a bin of their own).
* ``quality_score`` = mean(column shapes mean, column pair trends mean).

Where this deliberately differs from SDMetrics 0.32:

* ``TVComplement`` counts missing values as a level of their own (SDMetrics drops
  them), so a generator that loses or invents missing values is penalised. Without
  missing values the two agree.
* In the Quality Report SDMetrics bins the synthetic column of a mixed pair on the
  *synthetic* column's own edges, which hides shifted or rescaled columns; here both
  tables use the real edges, as SDMetrics' ``ContingencySimilarity`` metric does when
  given ``continuous_column_names``.

Scores that cannot be computed (a column missing in every row, a constant column in
a correlation) are reported as ``None`` and left out of the means, as SDMetrics does.

Memory: a pair's two-way table has levels_a x levels_b cells, but only the cells that
occur are counted once it has more than :data:`DENSE_CELLS` cells (and more than the
rows), so two high-cardinality columns cost memory in proportion to the rows, not to
the product of their levels; the scores are the same either way (no level is pooled).
"""

from __future__ import annotations

import itertools
import math
import sys
from typing import Any

import numpy as np
import pandas as pd

from synthgen.data.schema import TableSchema, coerce_column

NUMERIC_KINDS = ("continuous", "integer", "datetime")
DISCRETE_KINDS = ("categorical", "boolean")
DEFAULT_BINS = 10  # SDMetrics' num_discrete_bins default
_DECIMALS = sys.float_info.dig - 1  # SDMetrics rounds before the KS test
DENSE_CELLS = 1 << 20  # a two-way table up to this many cells is counted densely (8 MiB per side)


def to_numeric(values: pd.Series) -> np.ndarray:
    """Float array of a numeric or datetime column; datetimes become epoch seconds.

    Missing values (None, NaN, NaT, pd.NA) become NaN.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_any_dtype(values):
        return ((values - pd.Timestamp(0)) / pd.Timedelta(seconds=1)).to_numpy(dtype=float, na_value=np.nan)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def ks_complement(real: Any, synthetic: Any) -> float:
    """1 minus the two-sample Kolmogorov-Smirnov D statistic, ignoring missing values.

    Args:
        real: real values (numbers or datetimes; array-like).
        synthetic: synthetic values of the same kind.

    Returns:
        A score in [0, 1] (1: identical empirical CDFs); NaN when either side has no
        non-missing value.
    """
    a = to_numeric(pd.Series(real))
    b = to_numeric(pd.Series(synthetic))
    a = np.sort(np.round(a[~np.isnan(a)], _DECIMALS))
    b = np.sort(np.round(b[~np.isnan(b)], _DECIMALS))
    if not len(a) or not len(b):
        return math.nan
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / len(a)
    cdf_b = np.searchsorted(b, grid, side="right") / len(b)
    return float(1.0 - np.max(np.abs(cdf_a - cdf_b)))


def _joint_codes(real: pd.Series, synthetic: pd.Series) -> tuple[np.ndarray, np.ndarray, int]:
    """Integer codes of the levels of both columns (missing is a level), and their count."""
    both = pd.concat([real.reset_index(drop=True), synthetic.reset_index(drop=True)], ignore_index=True)
    if isinstance(both.dtype, pd.CategoricalDtype):
        both = both.astype(object)
    codes, uniques = pd.factorize(both, use_na_sentinel=False)
    return codes[: len(real)], codes[len(real) :], max(len(uniques), 1)


def _tv_complement_codes(a: np.ndarray, b: np.ndarray, n_levels: int) -> float:
    if not len(a) or not len(b):
        return math.nan
    if n_levels > max(DENSE_CELLS, len(a) + len(b)):  # sparse: count only the cells that occur
        _, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
        a, b, n_levels = inverse[: len(a)], inverse[len(a) :], int(inverse.max()) + 1
    p = np.bincount(a, minlength=n_levels) / len(a)
    q = np.bincount(b, minlength=n_levels) / len(b)
    return float(1.0 - 0.5 * np.abs(p - q).sum())


def tv_complement(real: Any, synthetic: Any) -> float:
    """1 minus the total variation distance of two discrete columns.

    Missing values count as a level of their own (SDMetrics drops them first; the two
    agree when there are none).

    Args:
        real: real values (any hashable values; array-like).
        synthetic: synthetic values.

    Returns:
        A score in [0, 1]; NaN when either side is empty.
    """
    return _tv_complement_codes(*_joint_codes(pd.Series(real), pd.Series(synthetic)))


def _bin_codes(real: np.ndarray, synthetic: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Bin numbers on the real values' histogram edges; outer edges open, NaN its own bin."""
    present = real[~np.isnan(real)]
    if not len(present):
        edges = np.array([-np.inf, np.inf])
    else:
        edges = np.histogram_bin_edges(present, bins=bins)
        edges[0], edges[-1] = -np.inf, np.inf
    # np.digitize puts NaN past the last edge: index len(edges), a level of its own.
    return np.digitize(real, edges), np.digitize(synthetic, edges), len(edges) + 1


def contingency_similarity(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    continuous_column_names: list[str] | tuple[str, ...] = (),
    bins: int = DEFAULT_BINS,
) -> float:
    """1 minus the total variation distance of the two-way tables of two columns.

    Args:
        real: two columns of real data.
        synthetic: the same two columns of synthetic data.
        continuous_column_names: columns to bin first (on the real values' edges).
        bins: bins per numeric column; default 10, as SDMetrics.

    Returns:
        A score in [0, 1]; missing values are a level of their own.
    """
    a_codes, b_codes, sizes = [], [], []
    for col in real.columns[:2]:
        if col in continuous_column_names:
            a, b, n = _bin_codes(to_numeric(real[col]), to_numeric(synthetic[col]), bins)
        else:
            a, b, n = _joint_codes(real[col], synthetic[col])
        a_codes.append(a)
        b_codes.append(b)
        sizes.append(n)
    a = a_codes[0] * sizes[1] + a_codes[1]
    b = b_codes[0] * sizes[1] + b_codes[1]
    return _tv_complement_codes(a, b, sizes[0] * sizes[1])


def correlation_similarity(real: pd.DataFrame, synthetic: pd.DataFrame) -> float:
    """1 - |ρ_real - ρ_syn| / 2 with Pearson's ρ of two numeric columns.

    Rows where either value is missing are dropped (per table).

    Args:
        real: two numeric (or datetime) columns of real data.
        synthetic: the same two columns of synthetic data.

    Returns:
        A score in [0, 1]; NaN when a correlation is undefined (constant column, < 2 rows).
    """
    rho = []
    for frame in (real, synthetic):
        x = pd.DataFrame({i: to_numeric(frame[c]) for i, c in enumerate(frame.columns[:2])})
        rho.append(x.corr(method="pearson").iloc[0, 1])
    return float(1.0 - abs(rho[0] - rho[1]) / 2.0)


def _nanmean(values: list[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return float(np.mean(present)) if present else math.nan


def _clean(value: float) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else float(value)


def fidelity_report(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    bins: int = DEFAULT_BINS,
) -> dict[str, Any]:
    """Column shapes, column pair trends and the quality score of a synthetic table.

    Only modelled columns (kinds continuous, integer, categorical, boolean, datetime)
    are scored; id and constant columns are ignored. Text dates and booleans are
    parsed as the schema says.

    Args:
        real: the real (train) table; must hold every modelled schema column.
        synthetic: the synthetic table; same columns.
        schema: the table schema.
        bins: bins per numeric column in mixed-pair contingency tables; default 10.

    Returns:
        JSON-ready ``{"quality_score", "column_shapes", "column_pair_trends",
        "columns": {col: score}, "pairs": {"a|b": score}}``; undefined scores are
        ``None`` and are left out of the means.
    """
    specs = [c for c in schema.columns if c.modelled]
    r = {c.name: coerce_column(real[c.name], c) for c in specs}
    s = {c.name: coerce_column(synthetic[c.name], c) for c in specs}
    numeric = {c.name for c in specs if c.kind in NUMERIC_KINDS}

    # Per-column encodings, computed once and reused by every pair.
    num_r = {n: to_numeric(r[n]) for n in numeric}
    num_s = {n: to_numeric(s[n]) for n in numeric}
    codes: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
    for c in specs:
        if c.name in numeric:
            codes[c.name] = _bin_codes(num_r[c.name], num_s[c.name], bins)
        else:
            codes[c.name] = _joint_codes(r[c.name], s[c.name])

    columns: dict[str, float] = {}
    for c in specs:
        if c.name in numeric:
            columns[c.name] = ks_complement(num_r[c.name], num_s[c.name])
        else:
            columns[c.name] = _tv_complement_codes(*codes[c.name])

    corr: dict[int, pd.DataFrame] = {}
    num_names = [c.name for c in specs if c.name in numeric]
    if len(num_names) >= 2:  # all numeric pairs at once: pairwise-complete Pearson
        corr[0] = pd.DataFrame(num_r, columns=num_names).corr(method="pearson")
        corr[1] = pd.DataFrame(num_s, columns=num_names).corr(method="pearson")

    pairs: dict[str, float] = {}
    for a, b in itertools.combinations([c.name for c in specs], 2):
        if a in numeric and b in numeric:
            score = 1.0 - abs(corr[0].at[a, b] - corr[1].at[a, b]) / 2.0
        else:
            (ra, sa, na), (rb, sb, nb) = codes[a], codes[b]
            score = _tv_complement_codes(ra * nb + rb, sa * nb + sb, na * nb)
        pairs[f"{a}|{b}"] = float(score)

    shapes = _nanmean(list(columns.values()))
    trends = _nanmean(list(pairs.values()))
    return {
        "quality_score": _clean(_nanmean([shapes, trends])),
        "column_shapes": _clean(shapes),
        "column_pair_trends": _clean(trends),
        "columns": {k: _clean(v) for k, v in columns.items()},
        "pairs": {k: _clean(v) for k, v in pairs.items()},
    }
