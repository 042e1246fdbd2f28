"""Read a real table, infer its schema and split off the holdout.

The holdout (``data.holdout``, default 20%, seeded by ``data.seed``) is never trained
on: validation, utility and privacy checks compare against it.

Two rules keep real values that could identify someone out of everything a run writes
(the splits, the schema, the model, MLflow, the expectation suite, the reports):

* Id columns (declared in ``data.id_columns`` or inferred, see
  :mod:`synthgen.data.schema`) have their values replaced by surrogate keys before the
  split: equal values get equal keys, numbered in order of first appearance
  (``id-00000001``, ...; ``1, 2, ...`` for integer columns); missing values stay missing.
* Categorical levels seen fewer than ``data.min_level_count`` (default 10) times in the
  train split are pooled into one level, :data:`RARE_LEVEL` (``"__rare__"``), in both
  splits before the schema's levels are taken; holdout values that are not a kept train
  level are pooled too. Exempt: booleans and the ``data.target`` column (its classes are
  the labels that stratification, utility and augment name). An inferred integer
  category with rare levels is modelled as an integer instead; one declared
  ``categorical`` in ``data.columns`` is turned into text and pooled.
"""

from __future__ import annotations

import codecs
import json
import logging
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from synthgen.config import DataConfig
from synthgen.data.schema import ColumnSpec, TableSchema, conform, infer_schema, restrict
from synthgen.data.structure import check_overrides, learn_determinations, learn_orderings, learn_structure
from synthgen.errors import ConfigError, DataError

log = logging.getLogger(__name__)

MIN_ROWS = 10  # fewer rows cannot be split into a train set and a holdout
READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
RARE_LEVEL = "__rare__"  # the one level rare categorical levels are pooled into
#: Values the table preparer gives a meaning of its own (synthgen.transformers.prepare: NAN is a
#: missing category, OTHER a pooled one); a real value spelled so would be read as one: refused.
RESERVED_VALUES = ("__nan__", "__other__")
#: Column names the preparer adds beside the table's (a missingness-pattern column, and
#: ``<column>__missing`` / ``<column>__point`` per numeric column): a real column so named is refused.
RESERVED_COLUMN = "__missing_pattern__"
RESERVED_SUFFIXES = ("__missing", "__point")
#: Numbers beyond this magnitude are refused: their squares (variances, mixture fits) overflow.
MAX_MAGNITUDE = 1e150


def read_table(path: str | Path, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a CSV or Parquet file.

    Raises:
        DataError: missing, empty or header-only file, unknown format, bad encoding,
            duplicate column names, a first row with more fields than the header.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (data.path)")
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unsupported format {path.suffix!r}; use .csv or .parquet")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(f"{path}: unknown text encoding {encoding!r} (data.encoding; e.g. utf-8, latin-1)") from None
    try:
        if kind == "csv":
            with warnings.catch_warnings():  # more fields than names: an error, not a silent shift or cut
                warnings.simplefilter("error", pd.errors.ParserWarning)
                frame = pd.read_csv(path, encoding=encoding, low_memory=False, index_col=False)
            header = pd.read_csv(path, encoding=encoding, header=None, nrows=1, dtype=str, keep_default_na=False)
            _check_header([str(v) for v in header.iloc[0]] if len(header) else [], path)
        else:
            frame = pd.read_parquet(path)
    except pd.errors.ParserWarning:
        raise DataError(f"{path}: cannot be read as csv (the first row has more fields than the header)") from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: byte {exc.start} is not valid {encoding}; set data.encoding (e.g. latin-1)"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file has no columns") from None
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot be read as {kind} ({str(exc).splitlines()[0]})") from None
    if frame.empty:
        raise DataError(f"{path}: has a header but no data rows")
    frame.columns = [str(c) for c in frame.columns]
    _check_header(list(frame.columns), path)
    return frame


def _check_header(names: list[str], path: Path) -> None:
    """Column names as written in the file (pandas would rename a second ``a`` to ``a.1``)."""
    seen: set[str] = set()
    for name in names:
        if name in seen and name != "":  # empty names are numbered by pandas ("Unnamed: 3")
            raise DataError(f"{path}: column {name!r} appears more than once in the header; "
                            "column names must be unique")
        seen.add(name)


def check_values(table: pd.DataFrame, schema: TableSchema, source: str) -> None:
    """Refuse what synthgen cannot write, model or would misread: infinite numbers, numbers
    beyond ±:data:`MAX_MAGNITUDE`, values and column names it reserves
    (:data:`RESERVED_VALUES`, :data:`RESERVED_COLUMN`, :data:`RESERVED_SUFFIXES`).

    Raises:
        DataError: naming the file and the first column at fault.
    """
    names = set(schema.names)
    for spec in schema.columns:
        name = spec.name
        if name == RESERVED_COLUMN or any(name.endswith(s) and name[: -len(s)] in names for s in RESERVED_SUFFIXES):
            raise DataError(f"{source}: column name {name!r} is reserved by synthgen (it names the columns it adds "
                            "while training); rename the column")
        values = table[name]
        if pd.api.types.is_float_dtype(values):
            numbers = values.to_numpy(dtype=float, na_value=np.nan)
            n_inf = int(np.isinf(numbers).sum())
            if n_inf:
                raise DataError(f"{source}: column {name!r} has {n_inf} infinite values (inf or -inf); "
                                "make them empty (missing) or finite")
            largest = float(np.nanmax(np.abs(numbers))) if not np.isnan(numbers).all() else 0.0
            if largest > MAX_MAGNITUDE:
                raise DataError(f"{source}: column {name!r} has values as large as {largest:.3g}; numbers beyond "
                                f"±{MAX_MAGNITUDE:g} cannot be modelled: rescale the column")
        elif spec.kind != "id" and (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
            text = values.dropna().astype(str)
            for value in RESERVED_VALUES:
                if (text == value).any():
                    raise DataError(f"{source}: column {name!r} has the value {value!r} ({int((text == value).sum())} "
                                    "rows), which synthgen reserves for missing or pooled categories; recode it")


def check_schema(schema: TableSchema, source: str) -> None:
    """The schema can be saved as JSON (finite numbers only), checked before anything is written.

    Raises:
        DataError: a column's statistics are not finite (naming the column).
    """
    for spec in schema.columns:
        try:
            json.dumps(asdict(spec), default=str, allow_nan=False)
        except ValueError:
            raise DataError(f"{source}: column {spec.name!r}: its range or structure is not finite "
                            "(values too large to model?)") from None
    try:
        json.dumps(schema.extra, default=str, allow_nan=False)
    except ValueError:
        raise DataError(f"{source}: the schema's statistics are not finite numbers") from None


def split_holdout(
    table: pd.DataFrame, fraction: float, seed: int, target: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded split; stratified by ``target`` when it is discrete and every class has 2+ rows."""
    rng = np.random.default_rng(seed)
    n = len(table)
    labels = table[target].astype(str) if target is not None else None
    if labels is not None and labels.nunique() <= max(2, n // 10) and labels.value_counts().min() >= 2:
        holdout_idx = []
        for _, idx in sorted(labels.groupby(labels).indices.items()):
            take = max(1, int(round(len(idx) * fraction)))
            holdout_idx.extend(rng.choice(idx, size=take, replace=False).tolist())
        mask = np.zeros(n, dtype=bool)
        mask[holdout_idx] = True
    else:
        mask = np.zeros(n, dtype=bool)
        mask[rng.permutation(n)[: max(1, int(round(n * fraction)))]] = True
    return table[~mask].reset_index(drop=True), table[mask].reset_index(drop=True)


def surrogate_keys(values: pd.Series) -> pd.Series:
    """Equal values -> equal fresh keys, numbered 1, 2, ... in order of first appearance.

    Integer columns get integers (``Int64`` when values are missing); others get
    ``"id-00000001"``-style strings. Missing values stay missing.
    """
    codes, _ = pd.factorize(values, use_na_sentinel=True)
    present = codes >= 0
    if pd.api.types.is_integer_dtype(values) or (
        pd.api.types.is_float_dtype(values) and bool(np.all(np.mod(values.dropna(), 1) == 0))
    ):
        keys = pd.Series(codes + 1, index=values.index, dtype="int64")
        return keys if present.all() else keys.astype("Int64").where(present)
    return pd.Series([f"id-{c + 1:08d}" if c >= 0 else None for c in codes], index=values.index, dtype=object)


def _as_text(values: pd.Series) -> pd.Series:
    """Numbers as text levels (whole numbers without a decimal point); missing stays missing."""
    def text(v: object) -> object:
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return str(int(v))
        return str(v)

    return values.astype(object).map(text, na_action="ignore")


def _pool(values: pd.Series, kept: set) -> pd.Series:
    values = values.astype(object)
    return values.where(values.isna() | values.isin(kept), RARE_LEVEL)


def pool_rare_levels(
    schema: TableSchema, train: pd.DataFrame, holdout: pd.DataFrame, min_count: int,
    declared: set[str] | frozenset[str] = frozenset(),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pool categorical levels seen fewer than ``min_count`` times in ``train`` into
    :data:`RARE_LEVEL`, in ``train`` and ``holdout`` (a holdout value not kept in train is
    pooled too). Booleans and ``schema.target`` are exempt. A numeric category with rare
    levels becomes kind ``integer`` (its spec is changed in place) unless its name is in
    ``declared`` (a ``data.columns`` override), in which case it is pooled as text.

    Returns:
        The new (train, holdout) frames; the inputs are not modified.
    """
    train, holdout = train.copy(), holdout.copy()
    for spec in schema.columns:
        if spec.kind != "categorical" or spec.name == schema.target:
            continue
        name = spec.name
        counts = train[name].value_counts(dropna=True)
        n_rare = int((counts < min_count).sum())
        if not n_rare:
            continue
        if pd.api.types.is_numeric_dtype(train[name]):
            if name not in declared:
                _note(spec, f"{n_rare} levels seen fewer than {min_count} times; modelled as integer")
                spec.kind = "integer"
                log.info("column %r: %d levels seen fewer than %d times (data.min_level_count); "
                         "modelled as an integer, not a category", name, n_rare, min_count)
                continue
            train[name], holdout[name] = _as_text(train[name]), _as_text(holdout[name])
            counts = train[name].value_counts(dropna=True)
        kept = set(counts.index[counts >= min_count])
        train[name], holdout[name] = _pool(train[name], kept), _pool(holdout[name], kept)
        _note(spec, f"{n_rare} levels seen fewer than {min_count} times pooled into {RARE_LEVEL!r}")
        log.info("column %r: %d levels seen fewer than %d times in the train split pooled into %r "
                 "(data.min_level_count)", name, n_rare, min_count, RARE_LEVEL)
    return train, holdout


def _note(spec: ColumnSpec, text: str) -> None:
    spec.note = f"{spec.note}; {text}" if spec.note else text


def learn_structures(schema: TableSchema, train: pd.DataFrame, cfg: DataConfig) -> None:
    """Set each continuous/integer column's value structure (point masses, value grid;
    :mod:`synthgen.data.structure`) from the train split, as ``data.structure`` says."""
    check_overrides(cfg.structure, {c.name: c.kind for c in schema.columns}, str(cfg.path))
    for spec in schema.columns:
        entry = cfg.structure.get(spec.name)
        if spec.kind not in ("continuous", "integer") or entry == "off":
            spec.structure = None
            continue
        spec.structure = learn_structure(train[spec.name], min_count=cfg.min_level_count,
                                         share=cfg.point_mass_share, declared=entry)
        if spec.structure and spec.structure["point_masses"]:
            log.info("column %r: point masses %s (data.point_mass_share)", spec.name,
                     ", ".join(f"{v:g} ({s:.0%})" for v, s in zip(spec.structure["point_masses"],
                                                                 spec.structure["point_mass_shares"])))


def learn_bounds(schema: TableSchema, train: pd.DataFrame, cfg: DataConfig) -> None:
    """Set ``at_most`` in the value structures: declared in ``data.structure``, else
    learned (:func:`synthgen.data.structure.learn_orderings`) among the columns that have a
    structure."""
    numeric = [s.name for s in schema.columns if s.structure is not None]
    declared = {c: e["at_most"] for c, e in cfg.structure.items() if isinstance(e, dict) and "at_most" in e}
    bounds = declared or learn_orderings(train, numeric)
    for low, high in declared.items():
        a, b = (pd.to_numeric(train[c], errors="coerce") for c in (low, high))
        if (a > b).any() or (a < 0).any() or (b <= 0).any():
            raise DataError(f"{cfg.path}: data.structure.{low}.at_most: {low!r} must be >= 0 and at most "
                            f"{high!r}, which must be > 0, in every train row ({int((a > b).sum())} rows exceed it)")
    for low, high in bounds.items():
        if schema[low].structure is not None:
            schema[low].structure["at_most"] = high
            log.info("column %r never exceeds %r in the train split; the generator keeps that order "
                     "(data.structure)", low, high)


def learn_rules(schema: TableSchema, train: pd.DataFrame, cfg: DataConfig) -> None:
    """Set ``determined_by`` rules on discrete columns another column fixes in every train
    row (:func:`synthgen.data.structure.learn_determinations`), unless ``data.structure``
    turns the column ``off``."""
    discrete = [s.name for s in schema.columns if s.discrete]
    numeric = [s.name for s in schema.columns if s.kind in ("continuous", "integer")]
    text = {c: train[c].astype(object).where(train[c].notna(), "__nan__").map(str) for c in discrete}
    for column, rule in learn_determinations(train, discrete, numeric, text).items():
        if cfg.structure.get(column) != "off":
            schema[column].structure = rule
            log.info("column %r is determined by %r in every train row; the generator keeps that rule "
                     "(data.structure: {%s: off} to drop it)", column, rule["determined_by"], column)


def ingest(cfg: DataConfig) -> tuple[TableSchema, pd.DataFrame, pd.DataFrame]:
    """Read ``cfg.path``, infer the schema (with params overrides), replace id values by
    surrogate keys, split train/holdout, pool rare levels (see the module docstring) and
    learn the numeric columns' value structure (:func:`learn_structures`).

    Returns:
        (schema, train, holdout), the frames already typed as the schema says; the
        schema's statistics and levels come from the (pooled) train split only.
    """
    table = read_table(cfg.path, cfg.encoding)
    if len(table) < MIN_ROWS:
        raise DataError(f"{cfg.path}: {len(table)} rows; at least {MIN_ROWS} are needed")
    if cfg.target is not None and cfg.target not in table.columns:
        raise ConfigError(
            f"data.target: column {cfg.target!r} is not in {cfg.path} (columns: {list(table.columns)})"
        )
    schema = infer_schema(
        table, target=cfg.target, overrides=cfg.columns, id_columns=cfg.id_columns, source=str(cfg.path)
    )
    if not any(c.modelled for c in schema.columns):
        raise DataError(f"{cfg.path}: no column can be modelled (all are ids or constants)")
    if cfg.target is not None and schema[cfg.target].kind in ("id", "constant"):
        raise ConfigError(
            f"data.target: column {cfg.target!r} is {schema[cfg.target].kind} ({schema[cfg.target].note}); "
            "it cannot be a target"
        )
    table = conform(table, schema)
    check_values(table, schema, str(cfg.path))
    for col in schema.columns:
        if col.kind == "id":
            table[col.name] = surrogate_keys(table[col.name])
            if col.name not in cfg.id_columns and col.name not in cfg.columns:
                log.info("column %r is kind id (%s): not modelled, regenerated as fresh ids; "
                         "set data.columns to model it", col.name, col.note)
    train, holdout = split_holdout(table, cfg.holdout, cfg.seed, cfg.target)
    declared = {name for name, kind in cfg.columns.items() if kind == "categorical"}
    train, holdout = pool_rare_levels(schema, train, holdout, cfg.min_level_count, declared)
    schema = restrict(schema, train)
    learn_structures(schema, train, cfg)
    learn_bounds(schema, train, cfg)
    learn_rules(schema, train, cfg)
    for col in schema.columns:
        if col.discrete and col.categories and len(col.categories) >= cfg.max_categories:
            log.warning(
                "column %r has %d levels; the %d most frequent are modelled, rarer ones pooled "
                "(data.max_categories)",
                col.name, len(col.categories), cfg.max_categories - 1,
            )
    schema.extra["n_train"], schema.extra["n_holdout"] = len(train), len(holdout)
    check_schema(schema, str(cfg.path))
    return schema, train, holdout
