"""Turn a raw table into the frame every synthesizer models, and back.

The prepared frame has only float columns (continuous, integer, datetime as epoch
seconds) and string columns (categorical, boolean). Deliberate handling, shared by
every tabular backend:

* Point masses (:mod:`synthgen.data.structure`, learned at ingest): a numeric column
  with point masses gets a discrete column ``<name>__point`` (levels ``value`` and
  ``p0``, ``p1``, ... for each mass), so the generator *chooses* an exact 0 or 999 beside
  its continuous modes - unless ``point_states=False`` (``tabular_gan``, whose
  normalizer gives each mass a mode: :attr:`TablePreparer.model_masses`); the numeric
  column keeps the true value (so its relation to other columns stays ordinal), and a
  mass state decodes to the exact mass value.
* Orders (``at_most``): a column that never exceeds another is prepared as its ratio to
  it and decoded as ratio times its output. Rules (``determined_by``): a category
  another column fixes is set from that column's output.
* Value grids: on output, values off the point masses are moved onto the learned grid
  (:func:`synthgen.data.structure.snap`: integer steps, decimals, round amounts by
  magnitude, keeping the distribution).
* Missing numbers are modelled jointly: one discrete column :data:`PATTERN_COLUMN` holds
  each row's *missingness pattern* (which numeric columns are missing together), one
  level per pattern seen at least :data:`MIN_PATTERN_COUNT` times (rarer ones take the
  nearest frequent one); missing cells are imputed with draws from the column's present
  values. On output the pattern's cells become missing, so columns missing together stay
  missing together. Missing categories are their own level (``__nan__``). (Old
  preparers and ``private`` ones use one ``<name>__missing`` flag per column.)
* ``joint_missing=False`` (for backends whose sampler inflates rare levels, such as
  ctgan's log-frequency conditional vector): missingness is not modelled; missing cells
  are imputed (median / most frequent level) and, on output, each column's cells are
  blanked independently at that column's training missing rate (as SDV does for CTGAN).
* High-cardinality categoricals: the ``max_categories - 1`` most frequent levels are
  kept; rarer ones are pooled into ``__other__`` while training and, on output, each
  pooled cell is redrawn from the rare levels in proportion to their frequency.
* Id columns are regenerated as fresh keys; constant columns are refilled.
* Numbers are clipped to the observed range; integers are rounded; datetimes keep their
  granularity (first days of months, dates, seconds); dtypes and column order are
  restored.
* ``private=True`` (differential privacy, see :mod:`synthgen.training.dp`): nothing is
  fitted on the real values; only the schema, declared public, is read. Levels are the
  schema's level set in sorted order (never chosen or ordered by frequency; more levels
  than ``max_categories`` is a ``ConfigError``), missing numbers are imputed with the
  midpoint of the schema's ``min``/``max`` (a numeric column without them is a
  ``ConfigError`` naming it), and missingness is always modelled jointly, whatever
  ``joint_missing`` says: a column the schema marks as possibly missing
  (``missing_rate > 0``) gets its ``__nan__`` level (categories) or its
  ``<name>__missing`` flag (numbers), so missing rates reach the model only through the
  noisy level counts - no real median, mode or missing rate is used. Point masses are
  used (their values are part of the schema, declared public like the bounds); grids
  snap to the column's unit only (no learned roundness shares).

A fitted preparer is saved as JSON: :meth:`TablePreparer.to_dict` /
:meth:`TablePreparer.from_dict` (no pickle, so loading one never runs code).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from synthgen.data.schema import ColumnSpec, TableSchema, coerce_column
from synthgen.data.structure import apply_determination, snap
from synthgen.errors import ConfigError, DataError
from synthgen.transformers.values import fresh_ids, kept_levels, plain_json, restore_dtype, round_stamps, rows_of

log = logging.getLogger(__name__)

NAN = "__nan__"
OTHER = "__other__"
MISSING_SUFFIX = "__missing"
POINT_SUFFIX = "__point"  # <name>__point: which point mass, or "value" (the continuous part)
CONTINUOUS_STATE = "value"
PATTERN_COLUMN = "__missing_pattern__"  # levels "m0", "m1", ...: missingness patterns
MIN_PATTERN_COUNT = 10  # rarer missingness patterns take the nearest frequent one


class TablePreparer:
    """Fitted mapping raw table <-> prepared frame.

    Args:
        schema: the table schema (column kinds, levels, ranges).
        max_categories: levels kept per categorical; rarer ones are pooled. Default 500.
        joint_missing: model missingness as levels/flags (default ``True``) or re-insert
            it independently at each column's training rate (``False``).
        private: differential privacy: fit nothing on the real values (see the module
            docstring). Default ``False``.
        point_states: give each column with point masses a ``<name>__point`` state
            column (default ``True``); ``False`` when the model takes the point masses
            itself (``tabular_gan``'s normalizer gives each one a mode,
            :attr:`point_masses`): a value exactly equal to a point mass is then one.

    Fitted attributes: ``medians_`` (the imputation value of each numeric column: its
    median - of the ratio for a column with a bound - or under ``private`` the midpoint
    of its public range), ``bounds_``, ``rules_``,
    ``missing_cols_`` (per-column flags), ``pattern_columns_`` and ``patterns_`` (the
    numeric columns whose missingness is modelled jointly, and each pattern's missing
    columns), ``point_masses_``, ``kept_levels_``, ``rare_levels_``.
    """

    def __init__(self, schema: TableSchema, max_categories: int = 500, joint_missing: bool = True,
                 private: bool = False, point_states: bool = True):
        self.schema = schema
        self.max_categories = max_categories
        self.joint_missing = joint_missing
        self.private = private
        self.point_states = point_states

    @property
    def is_private(self) -> bool:
        """Whether this preparer was fitted under differential privacy (``private``)."""
        return bool(getattr(self, "private", False))  # preparers saved before the flag: no

    @property
    def models_missingness(self) -> bool:
        """Missingness is modelled as levels/flags (``joint_missing`` or ``private``)."""
        return self.joint_missing or self.is_private

    # -- fitting -------------------------------------------------------------------
    def fit(self, table: pd.DataFrame) -> TablePreparer:
        self.medians_: dict[str, float] = {}
        self.missing_cols_: list[str] = []
        self.kept_levels_: dict[str, list[str]] = {}
        self.rare_levels_: dict[str, tuple[list[str], list[float]]] = {}
        self.point_masses_: dict[str, list[float]] = {
            spec.name: list(spec.structure["point_masses"]) for spec in self._modelled()
            if spec.structure and spec.structure.get("point_masses")}
        self.pattern_columns_: list[str] = []
        self.patterns_: list[list[str]] = []
        self.draw_missing_ = True
        modelled_numbers = {c.name for c in self._modelled() if c.kind in ("continuous", "integer")}
        self.bounds_: dict[str, str] = {
            spec.name: spec.structure["at_most"] for spec in self._modelled()
            if spec.structure and spec.structure.get("at_most") in modelled_numbers and spec.name in modelled_numbers}
        self.rules_: dict[str, dict[str, Any]] = {} if self.is_private else {
            spec.name: spec.structure for spec in self._modelled()
            if spec.discrete and spec.structure and spec.structure.get("determined_by") in {c.name for c in self._modelled()}}
        if self.is_private:
            return self._fit_public(table)
        for spec in self._modelled():
            values = self._numeric_or_text(table[spec.name], spec)
            if spec.discrete:
                if not self.joint_missing:
                    values = values[values != NAN]
                counts = values.value_counts()
                kept = kept_levels(counts, self.max_categories)
                rare = counts.iloc[len(kept) :]
                self.kept_levels_[spec.name] = kept
                if len(rare):
                    log.info("column %r: %d rare levels pooled while training", spec.name, len(rare))
                    self.rare_levels_[spec.name] = (list(rare.index), list(rare.to_numpy() / rare.sum()))
            else:
                if spec.name in self.bounds:
                    values = self._ratio(table, spec.name)
                median = values.median()
                self.medians_[spec.name] = float(median) if pd.notna(median) else 0.0
                if values.isna().any() and self.joint_missing:
                    self.pattern_columns_.append(spec.name)
        if self.pattern_columns_:
            self._fit_patterns(table)
        return self

    def _fit_patterns(self, table: pd.DataFrame) -> None:
        """The missingness patterns seen at least :data:`MIN_PATTERN_COUNT` times (at least
        the most frequent one), most frequent first."""
        keys = pd.Series(["".join(row) for row in np.where(self._missing_mask(table), "1", "0")])
        counts = keys.value_counts()
        frequent = list(counts.index[counts >= MIN_PATTERN_COUNT]) or [counts.index[0]]
        self.patterns_ = [[c for c, bit in zip(self.pattern_columns_, key) if bit == "1"] for key in frequent]
        if self.patterns_ == [[]]:  # every missing cell in a rare pattern: nothing missing is modelled
            self.patterns_ = []

    def _missing_mask(self, table: pd.DataFrame) -> np.ndarray:
        """(rows, pattern columns) bool: which of ``pattern_columns_`` are missing."""
        specs = [self.schema[c] for c in self.pattern_columns_]
        return np.column_stack([coerce_column(table[s.name], s).isna().to_numpy() for s in specs])

    def _pattern_codes(self, table: pd.DataFrame) -> np.ndarray:
        """Each row's pattern index: its own pattern, or the nearest frequent one."""
        mask = self._missing_mask(table)
        known = np.array([[c in p for c in self.pattern_columns_] for p in self.patterns_], dtype=bool)
        return (mask[:, None, :] != known[None, :, :]).sum(axis=2).argmin(axis=1)

    def _fit_public(self, table: pd.DataFrame) -> TablePreparer:
        """The ``private`` fit: levels, imputation values and missing flags from the schema
        only; the table is read just to check that its values lie in the public domain."""
        for spec in self._modelled():
            may_be_missing = spec.missing_rate > 0
            if spec.discrete:
                domain = self.public_domain(spec)
                if len(domain) >= self.max_categories:
                    raise ConfigError(
                        f"column {spec.name!r} has {len(domain)} levels, not below data.max_categories="
                        f"{self.max_categories}; under differential privacy levels are not chosen by frequency, "
                        "so raise data.max_categories above the column's levels"
                    )
                levels = domain + ([NAN] if may_be_missing else [])
                outside = ~self._numeric_or_text(table[spec.name], spec).isin(set(levels))
                if outside.any():
                    raise DataError(
                        f"column {spec.name!r}: {int(outside.sum())} training values are not levels of the "
                        "schema (the public domain under differential privacy); re-run ingest"
                    )
                self.kept_levels_[spec.name] = levels
            else:
                if spec.min is None or spec.max is None:
                    raise ConfigError(
                        f"column {spec.name!r} has no public bounds (schema min/max): under differential "
                        "privacy every numeric range must be public (data.public_bounds) - set them in "
                        "the schema or leave the column out"
                    )
                self.medians_[spec.name] = 0.5 if spec.name in self.bounds else (float(spec.min) + float(spec.max)) / 2
                if may_be_missing:
                    self.missing_cols_.append(spec.name)
        return self

    def public_domain(self, spec: ColumnSpec) -> list[str]:
        """The prepared levels of discrete ``spec`` that the schema declares, sorted (no
        frequency order), without the missing level."""
        if not spec.categories:
            raise ConfigError(f"column {spec.name!r} has no level set in the schema; under differential "
                              "privacy the levels of every categorical column must be public")
        return sorted(set(self._numeric_or_text(pd.Series(spec.categories, dtype=object), spec)) - {NAN})

    def public_levels(self) -> dict[str, list[str]]:
        """Every discrete prepared column's full level set (its levels, ``"0"``, ``"1"``
        for missing flags, the point-mass states), whether or not a level occurs in the data."""
        out = {name: list(levels) for name, levels in self.kept_levels_.items()}
        out.update({f"{name}{POINT_SUFFIX}": self.point_levels(name) for name in self.state_columns})
        out.update({f"{name}{MISSING_SUFFIX}": ["0", "1"] for name in self.missing_cols_})
        if self.patterns:
            out[PATTERN_COLUMN] = [f"m{i}" for i in range(len(self.patterns))]
        return out

    @property
    def point_masses(self) -> dict[str, list[float]]:
        """``{column: point-mass values}`` of the numeric columns that have point masses."""
        return getattr(self, "point_masses_", {})  # preparers saved before point masses: none

    @property
    def state_columns(self) -> dict[str, list[float]]:
        """The point masses of the columns that get a ``__point`` state column: all, or
        without ``point_states`` those of columns modelled as a ratio to a bound (their
        prepared values are not the raw ones)."""
        if getattr(self, "point_states", True):
            return self.point_masses
        return {c: v for c, v in self.point_masses.items() if c in self.bounds}

    @property
    def model_masses(self) -> dict[str, list[float]]:
        """The point masses the model takes itself (no state column; see ``point_states``)."""
        return {c: v for c, v in self.point_masses.items() if c not in self.state_columns}

    @property
    def patterns(self) -> list[list[str]]:
        """The modelled missingness patterns (each: the columns missing together)."""
        return getattr(self, "patterns_", [])

    def point_levels(self, column: str) -> list[str]:
        """The state levels of ``column``'s point-mass column."""
        return [CONTINUOUS_STATE] + [f"p{i}" for i in range(len(self.point_masses[column]))]

    def _modelled(self) -> list[ColumnSpec]:
        return [c for c in self.schema.columns if c.modelled]

    @staticmethod
    def _numeric_or_text(values: pd.Series, spec: ColumnSpec) -> pd.Series:
        values = coerce_column(values, spec)
        if spec.kind == "datetime":
            secs = values.astype("int64").astype(float) / 1e9
            return secs.where(values.notna())
        if spec.discrete:
            return values.astype(object).where(values.notna(), NAN).map(str)
        return values.astype(float)

    # -- forward ---------------------------------------------------------------------
    @property
    def added_columns(self) -> list[str]:
        """The discrete columns the preparer adds: point-mass states, missing flags, the
        missingness pattern."""
        return ([f"{name}{POINT_SUFFIX}" for name in self.state_columns]
                + [f"{name}{MISSING_SUFFIX}" for name in self.missing_cols_]
                + ([PATTERN_COLUMN] if self.patterns else []))

    @property
    def discrete_columns(self) -> list[str]:
        """Prepared-frame columns that are discrete (strings)."""
        return [c.name for c in self._modelled() if c.discrete] + self.added_columns

    @property
    def columns(self) -> list[str]:
        return [c.name for c in self._modelled()] + self.added_columns

    def transform(self, table: pd.DataFrame) -> pd.DataFrame:
        out: dict[str, Any] = {}
        for spec in self._modelled():
            values = self._numeric_or_text(table[spec.name], spec)
            if spec.discrete:
                kept = self.kept_levels_[spec.name]
                if not self.models_missingness:
                    values = values.where(values != NAN, kept[0] if kept else NAN)
                out[spec.name] = values.where(values.isin(set(kept)), OTHER).to_numpy(dtype=object)
            else:
                if spec.name in self.bounds:
                    values = self._ratio(table, spec.name)
                out[spec.name] = self._impute(values, spec.name)
        for name, masses in self.state_columns.items():
            values = self._numeric_or_text(table[name], self.schema[name]).to_numpy(dtype=float)
            state = np.full(len(table), CONTINUOUS_STATE, dtype=object)
            for i, mass in enumerate(masses):
                state[values == mass] = f"p{i}"
            out[f"{name}{POINT_SUFFIX}"] = state
        for name in self.missing_cols_:
            flag = table[name].isna() if name in table else pd.Series(False, index=table.index)
            out[f"{name}{MISSING_SUFFIX}"] = np.where(flag.to_numpy(), "1", "0").astype(object)
        if self.patterns:
            out[PATTERN_COLUMN] = np.array([f"m{i}" for i in self._pattern_codes(table)], dtype=object)
        return pd.DataFrame(out, index=range(len(table)))

    @property
    def bounds(self) -> dict[str, str]:
        """``{column: the column it never exceeds}``; such a column is modelled as its
        ratio to the bound (see :mod:`synthgen.data.structure`, ``at_most``)."""
        return getattr(self, "bounds_", {})

    def _ratio(self, table: pd.DataFrame, column: str) -> pd.Series:
        high = self.bounds[column]
        values = self._numeric_or_text(table[column], self.schema[column])
        return values / self._numeric_or_text(table[high], self.schema[high])

    def _impute(self, values: pd.Series, column: str) -> np.ndarray:
        """Missing numbers filled with seeded draws from the column's present values (no
        pile-up on one value); the median in old preparers, the public midpoint under DP."""
        out = values.to_numpy(dtype=float).copy()
        gaps = np.isnan(out)
        if not gaps.any():
            return out
        present = out[~gaps]
        if self.is_private or not present.size or not getattr(self, "draw_missing_", False):
            out[gaps] = self.medians_[column]
        else:
            out[gaps] = np.random.default_rng(0).choice(present, size=int(gaps.sum()))
        return out

    def encode_value(self, column: str, value: Any) -> Any:
        """A raw condition value in the prepared representation (for conditional sampling)."""
        spec = self.schema[column]
        series = self._numeric_or_text(pd.Series([value]), spec)
        return series.iloc[0]

    # -- backward ---------------------------------------------------------------------
    def inverse_transform(
        self, prepared: pd.DataFrame, rng: np.random.Generator, protect: Iterable[str] = (),
        bounds: dict[str, tuple[float, float]] | None = None,
    ) -> pd.DataFrame:
        """Prepared frame -> table with the schema's columns, order and dtypes.

        ``protect``: columns never made missing (conditioned ones). ``bounds``: ``{column:
        (low, high)}`` in prepared units (conditioned ranges): point masses outside them
        are not used and grid values stay inside them.
        """
        n = len(prepared)
        protect = set(protect)
        bounds = bounds or {}
        codes = (prepared[PATTERN_COLUMN].astype(str).str[1:].astype(int).to_numpy()
                 if self.patterns else np.zeros(n, dtype=int))
        out: dict[str, pd.Series] = {}
        if self.bounds:  # a ratio times its bound's generated value; decoded after the bound
            prepared = prepared.copy()
            for low, high in self.bounds.items():
                top = pd.to_numeric(prepared[high], errors="coerce").clip(self.schema[high].min, self.schema[high].max)
                prepared[low] = pd.to_numeric(prepared[low], errors="coerce").clip(0.0, 1.0) * top
        rules = getattr(self, "rules_", {})
        for spec in sorted(self.schema.columns, key=lambda c: (c.name in rules, c.name in self.bounds)):
            if spec.kind == "id":
                out[spec.name] = fresh_ids(spec, n)
            elif spec.kind == "constant":
                out[spec.name] = restore_dtype(pd.Series([spec.constant] * n, dtype=object), spec)
            elif spec.discrete:
                values = prepared[spec.name]
                if spec.name in rules and spec.name not in protect:  # set from the column that determines it
                    source = rules[spec.name]["determined_by"]
                    forced = apply_determination(rules[spec.name], out[source] if not self.schema[source].discrete
                                                 else prepared[source])
                    values = forced.where(forced.notna(), values.astype(object).to_numpy())
                out[spec.name] = self._decode_discrete(values, spec, rng)
            else:
                missing = np.zeros(n, dtype=bool)
                if spec.name in self.pattern_columns and spec.name not in protect:
                    missing = np.isin(codes, [i for i, p in enumerate(self.patterns) if spec.name in p])
                limit = bounds.get(spec.name)
                if spec.name in self.bounds:
                    high = self.bounds[spec.name]
                    top = pd.to_numeric(out[high], errors="coerce").to_numpy(dtype=float)
                    top = np.where(np.isnan(top), prepared[spec.name].to_numpy(dtype=float), top)
                    limit = (-np.inf, top) if limit is None else (limit[0], np.minimum(limit[1], top))
                out[spec.name] = self._decode_numeric(prepared, spec, rng, missing, limit)
        frame = pd.DataFrame(out)[self.schema.names]
        if not self.models_missingness:
            for spec in self._modelled():
                if spec.missing_rate > 0 and spec.name not in protect:
                    blank = rng.random(n) < spec.missing_rate
                    frame[spec.name] = restore_dtype(frame[spec.name].mask(blank), spec)
        return frame

    def _decode_discrete(self, values: pd.Series, spec: ColumnSpec, rng: np.random.Generator) -> pd.Series:
        values = values.astype(object).to_numpy().copy()
        if spec.name in self.rare_levels_:
            pooled = values == OTHER
            levels, probs = self.rare_levels_[spec.name]
            values[pooled] = rng.choice(np.array(levels, dtype=object), size=int(pooled.sum()), p=probs)
        lookup = {str(level): level for level in (spec.categories or [])}
        decoded = pd.Series([lookup.get(v, None) if v != NAN else None for v in values], dtype=object)
        return restore_dtype(decoded, spec)

    @property
    def pattern_columns(self) -> list[str]:
        return getattr(self, "pattern_columns_", [])

    def _decode_numeric(self, prepared: pd.DataFrame, spec: ColumnSpec, rng: np.random.Generator,
                        missing: np.ndarray, bound: tuple[Any, Any] | None) -> pd.Series:
        """``bound``: (low, high), scalars or per-row arrays, within the column's range."""
        values = pd.to_numeric(prepared[spec.name], errors="coerce").to_numpy(dtype=float)
        low, high = spec.min, spec.max
        if bound is not None:
            low = bound[0] if low is None else np.maximum(low, bound[0])
            high = bound[1] if high is None else np.minimum(high, bound[1])
        if low is not None and high is not None:
            values = np.clip(values, low, high)
        at_mass = np.zeros(len(values), dtype=bool)
        if spec.name in self.point_masses:
            masses = np.asarray(self.point_masses[spec.name], dtype=float)
            if spec.name in self.state_columns:
                state = prepared[f"{spec.name}{POINT_SUFFIX}"].astype(str).to_numpy()
                index = np.array([int(v[1:]) if v != CONTINUOUS_STATE else -1 for v in state], dtype=np.int64)
            else:  # the model drew the exact value
                raw = pd.to_numeric(prepared[spec.name], errors="coerce").to_numpy(dtype=float)
                order = np.argsort(masses)
                pos = np.clip(np.searchsorted(masses[order], raw), 0, len(masses) - 1)
                index = np.where(masses[order][pos] == raw, order[pos], -1)
            chosen = masses[np.maximum(index, 0)] if len(masses) else np.zeros(len(values))
            at_mass = (index >= 0) & (chosen >= (-np.inf if low is None else low)) & (
                chosen <= (np.inf if high is None else high))
            values = np.where(at_mass, chosen, values)
        if spec.structure and spec.kind in ("continuous", "integer"):
            rest = ~at_mass
            values[rest] = snap(values[rest], spec.structure, rng, low=rows_of(low, rest), high=rows_of(high, rest),
                                shares=not self.is_private)
        if spec.kind == "integer":
            values = np.round(values)
        flag = f"{spec.name}{MISSING_SUFFIX}"
        if flag in prepared:
            missing = missing | (prepared[flag].astype(str).to_numpy() == "1")
        series = pd.Series(np.where(missing, np.nan, values))
        if spec.kind == "datetime":
            stamps = pd.to_datetime((series * 1e9).round().astype("Int64"), unit="ns")
            return restore_dtype(round_stamps(stamps, spec.resolution), spec)
        return restore_dtype(series, spec)

    # -- persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The fitted preparer as plain JSON values, for a model directory (no pickle).

        ``schema`` is :meth:`~synthgen.data.schema.TableSchema.to_dict`; every other
        attribute (the settings and each fitted ``*_`` attribute) is kept under its own
        name, numpy values as Python ones and tuples as lists.

        Raises:
            TypeError: an attribute holds a value JSON cannot carry (named in the message).
        """
        state = {name: plain_json(value, name) for name, value in vars(self).items() if name != "schema"}
        return {"schema": self.schema.to_dict(), **state}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TablePreparer:
        """The preparer described by :meth:`to_dict`; it transforms and decodes exactly as
        the one saved (the same ``rng`` gives the same rows).

        Raises:
            ValueError: no ``schema``, or a key that is not a plain attribute name (one
                naming a method or property of the class is refused).
        """
        if not isinstance(state, dict) or "schema" not in state:
            raise ValueError("a saved TablePreparer needs a 'schema'")
        preparer = cls.__new__(cls)
        preparer.schema = TableSchema.from_dict(state["schema"])
        for name, value in state.items():
            if name == "schema":
                continue
            if not isinstance(name, str) or not name.isidentifier() or name.startswith("__"):
                raise ValueError(f"a saved TablePreparer cannot set {name!r}")
            member = inspect.getattr_static(cls, name, None)
            if callable(member) or isinstance(member, (property, classmethod, staticmethod)):
                raise ValueError(f"a saved TablePreparer cannot set {name!r} (a method or property)")
            setattr(preparer, name, value)
        return preparer
