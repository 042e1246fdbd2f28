"""Table schema: what each column is, inferred from data and overridable in params.

Column kinds:
    continuous  real numbers, modelled as such, clipped to the observed range.
    integer     whole numbers, modelled as continuous and rounded on output.
    (Both numeric kinds also get a value structure, point masses and a value grid,
    learned at ingest: :mod:`synthgen.data.structure`.)
    categorical a finite set of levels (strings, or numbers with few distinct values).
    boolean     True/False, modelled as a two-level category.
    datetime    timestamps, modelled as seconds since the epoch; output keeps their
                granularity (``resolution``: first days of months, dates, seconds).
    id          keys and other identifier-like text: excluded from modelling,
                regenerated as fresh ids (see below).
    constant    one value in every row (or all missing): not modelled, refilled.

Identifier-like text is never modelled as a category, because every level of a category
is written into the schema, the model, MLflow and the expectation suite. A text column
(at least ``MIN_ID_VALUES`` = 20 non-missing values) is kind ``id`` when more than
``ID_UNIQUE_SHARE`` = 0.5 of its non-missing values are distinct (e-mails, names,
account numbers, even with a few duplicates), or when it is free text: the median value
is at least ``FREE_TEXT_CHARS`` = 40 characters long. An integer column is ``id`` when
it is unique, has no missing values, more than 20 rows and a key-like name (``id``,
``uuid``, ``key``, ``*_id``). ``data.columns`` overrides either rule. Rare levels of the
categories that remain are pooled at ingest (:mod:`synthgen.data.ingest`,
``data.min_level_count``).
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthgen.errors import DataError

log = logging.getLogger(__name__)

MODELLED_KINDS = ("continuous", "integer", "categorical", "boolean", "datetime")
_LOW_CARDINALITY_INT = 10  # integers with at most this many levels are categories
_ID_NAMES = ("id", "uuid", "key")
ID_UNIQUE_SHARE = 0.5  # text with a larger share of distinct non-missing values is an identifier
FREE_TEXT_CHARS = 40  # text whose median value is at least this long is free text (kind id)
MIN_ID_VALUES = 20  # the two rules above need at least this many non-missing values


@dataclass
class ColumnSpec:
    """One column. ``dtype`` is the pandas dtype restored on output."""

    name: str
    kind: str
    dtype: str
    missing_rate: float = 0.0
    categories: list[Any] | None = None  # levels, most frequent first (discrete kinds)
    min: float | None = None  # observed range (numeric kinds; datetimes in epoch seconds)
    max: float | None = None
    constant: Any = None  # the value of a constant column
    resolution: str | None = None  # datetimes: "MS" (first days of months), "D" (dates), "s" or None (finer)
    structure: dict[str, Any] | None = None  # numbers: point masses and value grid (synthgen.data.structure)
    note: str = ""  # why inference chose this kind, when it was not obvious

    @property
    def modelled(self) -> bool:
        return self.kind in MODELLED_KINDS

    @property
    def discrete(self) -> bool:
        return self.kind in ("categorical", "boolean")


@dataclass
class TableSchema:
    """Columns in file order, the target, and the row count they were inferred from."""

    columns: list[ColumnSpec]
    target: str | None = None
    n_rows: int = 0
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(col.name == name for col in self.columns)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "tabular",
            "source": self.source,
            "n_rows": self.n_rows,
            "target": self.target,
            "columns": [asdict(c) for c in self.columns],
            **self.extra,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TableSchema:
        known = {"kind", "source", "n_rows", "target", "columns"}
        return cls(
            columns=[ColumnSpec(**c) for c in raw["columns"]],
            target=raw.get("target"),
            n_rows=raw.get("n_rows", 0),
            source=raw.get("source", ""),
            extra={k: v for k, v in raw.items() if k not in known},
        )

    def save(self, path: str | Path) -> None:
        from synthgen.io import write_json

        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> TableSchema:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise DataError(f"{path}: schema not found; run the ingest stage first") from None
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: not a synthgen schema ({exc})") from None


def _to_python(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _levels(values: pd.Series) -> list[Any]:
    counts = values.value_counts(dropna=True, sort=True)
    return [_to_python(v) for v in counts.index]


def _looks_like_datetime(values: pd.Series) -> bool:
    sample = values.dropna().astype(str).head(200)
    if sample.empty or sample.str.fullmatch(r"[+-]?\d+(\.\d+)?").any():
        return False
    parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() > 0.95)


def _infer_kind(name: str, values: pd.Series, n: int) -> tuple[str, str]:
    """Return (kind, note) for one column."""
    present = values.dropna()
    n_unique = present.nunique()
    if present.empty:
        return "constant", "all values missing"
    if n_unique == 1 and len(present) == n:
        return "constant", "one value in every row"
    if pd.api.types.is_bool_dtype(values):
        return "boolean", ""
    if pd.api.types.is_datetime64_any_dtype(values):
        return "datetime", ""
    if pd.api.types.is_numeric_dtype(values):
        integral = bool(np.all(np.mod(present.to_numpy(dtype=float), 1) == 0))
        if integral:
            name_is_id = name.lower() in _ID_NAMES or name.lower().endswith("_id")
            if n_unique == len(present) == n and n > 20 and name_is_id:
                return "id", "unique integer key"
            if n_unique <= _LOW_CARDINALITY_INT:
                return "categorical", f"integer with {n_unique} levels"
            return "integer", ""
        return "continuous", ""
    # text / object
    lowered = present.astype(str).str.strip().str.lower()
    if set(lowered.unique()) <= {"true", "false"}:
        return "boolean", "text true/false"
    if _looks_like_datetime(values):
        return "datetime", "parsed from text"
    id_note = _identifier_like(present, n_unique)
    if id_note:
        return "id", id_note
    numeric = pd.to_numeric(present, errors="coerce")
    n_num = int(numeric.notna().sum())
    if 0 < n_num < len(present):
        note = f"mixed numbers ({n_num}) and text ({len(present) - n_num}); treated as text"
        log.warning("column %r: %s", name, note)
        return "categorical", note
    return "categorical", ""


def _identifier_like(present: pd.Series, n_unique: int) -> str:
    """Why a text column's non-missing values look like identifiers or free text ("" if not)."""
    if len(present) < MIN_ID_VALUES:
        return ""
    share = n_unique / len(present)
    if share > ID_UNIQUE_SHARE:
        what = "unique text key" if n_unique == len(present) else "identifier-like text"
        return f"{what}: {share:.1%} of values distinct (above {ID_UNIQUE_SHARE:.0%})"
    length = float(present.astype(str).str.len().median())
    if length >= FREE_TEXT_CHARS:
        return f"free text: median length {length:.0f} characters (at least {FREE_TEXT_CHARS})"
    return ""


def coerce_column(values: pd.Series, spec: ColumnSpec) -> pd.Series:
    """Convert raw values to the representation a kind is modelled from."""
    if spec.kind == "datetime":
        if pd.api.types.is_datetime64_any_dtype(values):
            return values
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # mixed time zones: handled below
            parsed = pd.to_datetime(values, errors="coerce", format="mixed")
            if not pd.api.types.is_datetime64_any_dtype(parsed):  # mixed UTC offsets: as UTC
                parsed = pd.to_datetime(values, errors="coerce", format="mixed", utc=True)
        return parsed
    if spec.kind == "boolean" and not pd.api.types.is_bool_dtype(values):
        text = values.astype("string").str.strip().str.lower()
        return text.map({"true": True, "false": False}).astype("boolean")
    if spec.kind in ("continuous", "integer") and not pd.api.types.is_numeric_dtype(values):
        return pd.to_numeric(values, errors="coerce")
    return values


def infer_schema(
    table: pd.DataFrame,
    *,
    target: str | None = None,
    overrides: dict[str, str] | None = None,
    id_columns: list[str] | tuple[str, ...] = (),
    source: str = "",
) -> TableSchema:
    """Infer a :class:`TableSchema` from a frame.

    Args:
        table: the real data (all rows, before the holdout split).
        target: optional target column; must exist.
        overrides: ``{column: kind}`` that replace inference.
        id_columns: columns forced to kind ``id``.
        source: where the table came from, for messages.

    Raises:
        DataError: an override or id column names a column that does not exist.
    """
    overrides = dict(overrides or {})
    for col in [*overrides, *id_columns]:
        if col not in table.columns:
            raise DataError(f"{source or 'data'}: column {col!r} (from params) is not in the table")
    n = len(table)
    columns = []
    for name in table.columns:
        values = table[name]
        if name in id_columns:
            kind, note = "id", "declared in data.id_columns"
        elif name in overrides:
            kind, note = overrides[name], "declared in data.columns"
        else:
            kind, note = _infer_kind(str(name), values, n)
        spec = ColumnSpec(name=str(name), kind=kind, dtype=str(values.dtype), note=note)
        coerced = coerce_column(values, spec)
        bad = int(values.notna().sum() - coerced.notna().sum())
        if kind == "datetime" and bad and note == "parsed from text":  # inferred from a sample: text after all
            present = values.dropna()
            id_note = _identifier_like(present, present.nunique())
            spec.kind, coerced = ("id" if id_note else "categorical"), values
            spec.note = f"{bad} values are not dates; treated as text" + (f" ({id_note})" if id_note else "")
            log.warning("column %r: %s", name, spec.note)
        elif kind in ("continuous", "integer", "datetime") and bad:
            raise DataError(
                f"{source or 'data'}: column {name!r} is declared {kind} but {bad} values "
                "do not parse as such"
            )
        _describe(spec, coerced)
        if kind == "constant":
            log.info("column %r is constant (%s); it is refilled, not modelled", name, note)
        columns.append(spec)
    return TableSchema(columns=columns, target=target, n_rows=n, source=source)


def _describe(spec: ColumnSpec, values: pd.Series) -> None:
    """Fill a spec's statistics (dtype, missing rate, range, levels) from typed values."""
    spec.dtype = str(values.dtype)
    spec.missing_rate = float(values.isna().mean()) if len(values) else 0.0
    spec.min = spec.max = spec.categories = spec.constant = spec.resolution = None
    present = values.dropna()
    if spec.kind in ("continuous", "integer") and len(present):
        spec.min, spec.max = float(present.min()), float(present.max())
    elif spec.kind == "datetime" and len(present):
        nanos = present.astype("int64")
        spec.min, spec.max = float(nanos.min() / 1e9), float(nanos.max() / 1e9)
        if (nanos % (86_400 * 10**9) == 0).all():
            spec.resolution = "MS" if (present.dt.day == 1).all() and present.nunique() > 1 else "D"
        elif (nanos % 10**9 == 0).all():
            spec.resolution = "s"
    elif spec.discrete:
        spec.categories = _levels(values)
    elif spec.kind == "constant":
        spec.constant = _to_python(present.iloc[0]) if len(present) else None


def restrict(schema: TableSchema, table: pd.DataFrame) -> TableSchema:
    """The same column kinds with statistics taken from ``table`` only (the train split),
    so that nothing about the holdout reaches the model or the expectations."""
    columns = []
    for spec in schema.columns:
        spec = ColumnSpec(**{**spec.__dict__})
        _describe(spec, table[spec.name])
        columns.append(spec)
    return TableSchema(columns=columns, target=schema.target, n_rows=len(table), source=schema.source,
                       extra=dict(schema.extra))


def conform(table: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """The table with text dates and booleans parsed as the schema says."""
    return pd.DataFrame({c.name: coerce_column(table[c.name], c) for c in schema.columns})
