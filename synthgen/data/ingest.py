"""Read a real table, infer its schema and split off the holdout.

The holdout (``data.holdout``, default 20%, seeded by ``data.seed``) is never trained
on: validation, utility and privacy checks compare against it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from synthgen.config import DataConfig
from synthgen.data.schema import TableSchema, conform, infer_schema, restrict
from synthgen.errors import ConfigError, DataError

log = logging.getLogger(__name__)

MIN_ROWS = 10  # fewer rows cannot be split into a train set and a holdout
READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def read_table(path: str | Path, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a CSV or Parquet file.

    Raises:
        DataError: missing, empty or header-only file, unknown format, bad encoding,
            duplicate column names.
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
        if kind == "csv":
            frame = pd.read_csv(path, encoding=encoding, low_memory=False)
        else:
            frame = pd.read_parquet(path)
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
    dupes = frame.columns[frame.columns.duplicated()].tolist()
    if dupes:
        raise DataError(f"{path}: duplicate column names {dupes}")
    frame.columns = [str(c) for c in frame.columns]
    return frame


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


def ingest(cfg: DataConfig) -> tuple[TableSchema, pd.DataFrame, pd.DataFrame]:
    """Read ``cfg.path``, infer the schema (with params overrides), split train/holdout.

    Returns:
        (schema, train, holdout), the frames already typed as the schema says.
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
    for col in schema.columns:
        if col.discrete and col.categories and len(col.categories) >= cfg.max_categories:
            log.warning(
                "column %r has %d levels; the %d most frequent are modelled, rarer ones pooled "
                "(data.max_categories)",
                col.name, len(col.categories), cfg.max_categories - 1,
            )
    if cfg.target is not None and schema[cfg.target].kind in ("id", "constant"):
        raise ConfigError(f"data.target: column {cfg.target!r} is {schema[cfg.target].kind}; it cannot be a target")
    table = conform(table, schema)
    train, holdout = split_holdout(table, cfg.holdout, cfg.seed, cfg.target)
    schema = restrict(schema, train)
    schema.extra["n_train"], schema.extra["n_holdout"] = len(train), len(holdout)
    return schema, train, holdout
