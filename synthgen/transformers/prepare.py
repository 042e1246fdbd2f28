"""Turn a raw table into the frame every synthesizer models, and back.

The prepared frame has only float columns (continuous, integer, datetime as epoch
seconds) and string columns (categorical, boolean). Deliberate handling, shared by
every tabular backend:

* Missing numbers: the value is imputed with the median and a two-level column
  ``<name>__missing`` is added, so the model learns *when* a value is missing jointly
  with the other columns; on output the flagged cells become missing again. Missing
  categories are their own level (``__nan__``).
* ``joint_missing=False`` (for backends whose sampler inflates rare levels, such as
  ctgan's log-frequency conditional vector): missingness is not modelled; missing cells
  are imputed (median / most frequent level) and, on output, each column's cells are
  blanked independently at that column's training missing rate (as SDV does for CTGAN).
* High-cardinality categoricals: the ``max_categories - 1`` most frequent levels are
  kept; rarer ones are pooled into ``__other__`` while training and, on output, each
  pooled cell is redrawn from the rare levels in proportion to their frequency.
* Id columns are regenerated as fresh keys; constant columns are refilled.
* Numbers are clipped to the observed range; integers are rounded; dtypes and column
  order are restored.
* ``private=True`` (differential privacy, see :mod:`synthgen.training.dp`): nothing is
  fitted on the real values; only the schema, declared public, is read. Levels are the
  schema's level set in sorted order (never chosen or ordered by frequency; more levels
  than ``max_categories`` is a ``ConfigError``), missing numbers are imputed with the
  midpoint of the schema's ``min``/``max`` (a numeric column without them is a
  ``ConfigError`` naming it), and missingness is always modelled jointly, whatever
  ``joint_missing`` says: a column the schema marks as possibly missing
  (``missing_rate > 0``) gets its ``__nan__`` level (categories) or its
  ``<name>__missing`` flag (numbers), so missing rates reach the model only through the
  noisy level counts - no real median, mode or missing rate is used.

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
from synthgen.errors import ConfigError, DataError

log = logging.getLogger(__name__)

NAN = "__nan__"
OTHER = "__other__"
MISSING_SUFFIX = "__missing"


class TablePreparer:
    """Fitted mapping raw table <-> prepared frame.

    Args:
        schema: the table schema (column kinds, levels, ranges).
        max_categories: levels kept per categorical; rarer ones are pooled. Default 500.
        joint_missing: model missingness as levels/flags (default ``True``) or re-insert
            it independently at each column's training rate (``False``).
        private: differential privacy: fit nothing on the real values (see the module
            docstring). Default ``False``.

    Fitted attributes: ``medians_`` (the imputation value of each numeric column: its
    median, or under ``private`` the midpoint of its public range), ``missing_cols_``,
    ``kept_levels_``, ``rare_levels_``.
    """

    def __init__(self, schema: TableSchema, max_categories: int = 500, joint_missing: bool = True,
                 private: bool = False):
        self.schema = schema
        self.max_categories = max_categories
        self.joint_missing = joint_missing
        self.private = private

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
        if self.is_private:
            return self._fit_public(table)
        for spec in self._modelled():
            values = self._numeric_or_text(table[spec.name], spec)
            if spec.discrete:
                if not self.joint_missing:
                    values = values[values != NAN]
                counts = values.value_counts()
                kept = list(counts.index[: self.max_categories - 1]) if len(counts) >= self.max_categories else list(counts.index)
                rare = counts.iloc[len(kept) :]
                self.kept_levels_[spec.name] = kept
                if len(rare):
                    log.info("column %r: %d rare levels pooled while training", spec.name, len(rare))
                    self.rare_levels_[spec.name] = (list(rare.index), list(rare.to_numpy() / rare.sum()))
            else:
                median = values.median()
                self.medians_[spec.name] = float(median) if pd.notna(median) else 0.0
                if values.isna().any() and self.joint_missing:
                    self.missing_cols_.append(spec.name)
        return self

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
                self.medians_[spec.name] = (float(spec.min) + float(spec.max)) / 2
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
        """Every discrete prepared column's full level set (its levels, and ``"0"``, ``"1"``
        for missing flags), whether or not a level occurs in the data."""
        out = {name: list(levels) for name, levels in self.kept_levels_.items()}
        out.update({f"{name}{MISSING_SUFFIX}": ["0", "1"] for name in self.missing_cols_})
        return out

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
    def discrete_columns(self) -> list[str]:
        """Prepared-frame columns that are discrete (strings)."""
        cols = [c.name for c in self._modelled() if c.discrete]
        return cols + [f"{name}{MISSING_SUFFIX}" for name in self.missing_cols_]

    @property
    def columns(self) -> list[str]:
        names = [c.name for c in self._modelled()]
        return names + [f"{name}{MISSING_SUFFIX}" for name in self.missing_cols_]

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
                out[spec.name] = values.fillna(self.medians_[spec.name]).to_numpy(dtype=float)
        for name in self.missing_cols_:
            flag = table[name].isna() if name in table else pd.Series(False, index=table.index)
            out[f"{name}{MISSING_SUFFIX}"] = np.where(flag.to_numpy(), "1", "0").astype(object)
        return pd.DataFrame(out, index=range(len(table)))

    def encode_value(self, column: str, value: Any) -> Any:
        """A raw condition value in the prepared representation (for conditional sampling)."""
        spec = self.schema[column]
        series = self._numeric_or_text(pd.Series([value]), spec)
        return series.iloc[0]

    # -- backward ---------------------------------------------------------------------
    def inverse_transform(
        self, prepared: pd.DataFrame, rng: np.random.Generator, protect: Iterable[str] = ()
    ) -> pd.DataFrame:
        """Prepared frame -> table with the schema's columns, order and dtypes.

        ``protect``: columns never blanked by independent missingness (conditioned ones).
        """
        n = len(prepared)
        out: dict[str, pd.Series] = {}
        for spec in self.schema.columns:
            if spec.kind == "id":
                out[spec.name] = self._fresh_ids(spec, n)
            elif spec.kind == "constant":
                out[spec.name] = self._restore_dtype(pd.Series([spec.constant] * n, dtype=object), spec)
            elif spec.discrete:
                out[spec.name] = self._decode_discrete(prepared[spec.name], spec, rng)
            else:
                out[spec.name] = self._decode_numeric(prepared, spec)
        frame = pd.DataFrame(out)[self.schema.names]
        if not self.models_missingness:
            for spec in self._modelled():
                if spec.missing_rate > 0 and spec.name not in set(protect):
                    blank = rng.random(n) < spec.missing_rate
                    frame[spec.name] = self._restore_dtype(frame[spec.name].mask(blank), spec)
        return frame

    def _decode_discrete(self, values: pd.Series, spec: ColumnSpec, rng: np.random.Generator) -> pd.Series:
        values = values.astype(object).to_numpy().copy()
        if spec.name in self.rare_levels_:
            pooled = values == OTHER
            levels, probs = self.rare_levels_[spec.name]
            values[pooled] = rng.choice(np.array(levels, dtype=object), size=int(pooled.sum()), p=probs)
        lookup = {str(level): level for level in (spec.categories or [])}
        decoded = pd.Series([lookup.get(v, None) if v != NAN else None for v in values], dtype=object)
        return self._restore_dtype(decoded, spec)

    def _decode_numeric(self, prepared: pd.DataFrame, spec: ColumnSpec) -> pd.Series:
        values = pd.to_numeric(prepared[spec.name], errors="coerce").astype(float)
        if spec.min is not None and spec.max is not None:
            values = values.clip(spec.min, spec.max)
        if spec.kind == "integer":
            values = values.round()
        flag = f"{spec.name}{MISSING_SUFFIX}"
        if flag in prepared:
            values = values.where(prepared[flag].astype(str).to_numpy() != "1")
        if spec.kind == "datetime":
            stamps = pd.to_datetime((values * 1e9).round().astype("Int64"), unit="ns")
            if spec.resolution:
                stamps = stamps.dt.round(spec.resolution)
            return self._restore_dtype(stamps, spec)
        return self._restore_dtype(values, spec)

    @staticmethod
    def _fresh_ids(spec: ColumnSpec, n: int) -> pd.Series:
        if spec.dtype.lower().startswith(("int", "uint")):
            return pd.Series(np.arange(1, n + 1), dtype=spec.dtype)
        return pd.Series([f"syn-{i:08d}" for i in range(1, n + 1)], dtype=object)

    @staticmethod
    def _restore_dtype(values: pd.Series, spec: ColumnSpec) -> pd.Series:
        dtype = spec.dtype
        try:
            if dtype.startswith("datetime64"):
                return pd.to_datetime(values).astype(dtype)
            if dtype in ("int64", "int32", "int16", "int8", "uint8") and values.isna().any():
                return values.astype("Int64")
            if dtype == "bool" and values.isna().any():
                return values.astype("boolean")
            if dtype == "object":
                return values.astype(object).where(values.notna(), None)
            return values.astype(dtype)
        except (TypeError, ValueError):
            return values

    # -- persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The fitted preparer as plain JSON values, for a model directory (no pickle).

        ``schema`` is :meth:`~synthgen.data.schema.TableSchema.to_dict`; every other
        attribute (the settings and each fitted ``*_`` attribute) is kept under its own
        name, numpy values as Python ones and tuples as lists.

        Raises:
            TypeError: an attribute holds a value JSON cannot carry (named in the message).
        """
        state = {name: _plain(value, name) for name, value in vars(self).items() if name != "schema"}
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


def _plain(value: Any, name: str) -> Any:
    """``value`` as JSON-ready Python values (numpy scalars and arrays converted, tuples as
    lists); ``name`` is the attribute it belongs to, for the error.

    Raises:
        TypeError: a value JSON cannot carry, or a mapping key that is not a string.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_, np.integer, np.floating)):
        return value.item()
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.ndarray):
        return _plain(value.tolist(), name)
    if isinstance(value, (list, tuple)):
        return [_plain(v, name) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"TablePreparer.{name}: mapping keys must be strings to be saved as JSON")
        return {k: _plain(v, name) for k, v in value.items()}
    raise TypeError(f"TablePreparer.{name}: a {type(value).__name__} cannot be saved as JSON")
