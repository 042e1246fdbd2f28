"""Small value helpers of the table preparer: output dtypes, fresh ids, date rounding,
per-row bounds, the level cap, and JSON-ready state (a preparer is saved as JSON, never
pickled)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synthgen.data.schema import ColumnSpec


def kept_levels(counts: pd.Series, max_categories: int) -> list[Any]:
    """The levels a categorical keeps under the cap ``data.max_categories``.

    The rule of training (:class:`~synthgen.transformers.prepare.TablePreparer`), shared
    by validation (:class:`~synthgen.validation.encoding.MixedEncoder`): with fewer than
    ``max_categories`` levels every level is kept; otherwise the ``max_categories - 1``
    most frequent, and the rarer ones are pooled into one "other" level (so a column has
    at most ``max_categories`` levels in all).

    Args:
        counts: the column's level counts, most frequent first (``Series.value_counts()``).
        max_categories: the cap (at least 2).

    Returns:
        The kept levels, most frequent first.
    """
    if len(counts) < max_categories:
        return list(counts.index)
    return list(counts.index[: max_categories - 1])


def fresh_ids(spec: ColumnSpec, n: int, start: int = 0) -> pd.Series:
    """``n`` new keys for an id column: ``start + 1`` .. ``start + n`` for integer ids,
    ``syn-00000001``... (numbered the same way) otherwise; ``start`` (default 0) continues
    a numbering across the chunks of a large draw."""
    if spec.dtype.lower().startswith(("int", "uint")):
        return pd.Series(np.arange(start + 1, start + n + 1), dtype=spec.dtype)
    return pd.Series([f"syn-{i:08d}" for i in range(start + 1, start + n + 1)], dtype=object)


def restore_dtype(values: pd.Series, spec: ColumnSpec) -> pd.Series:
    """``values`` in the column's original dtype (nullable where values are missing)."""
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


def rows_of(bound: Any, rows: np.ndarray) -> Any:
    """A scalar bound as it is, a per-row one at ``rows``."""
    return bound if bound is None or np.ndim(bound) == 0 else np.asarray(bound)[rows]


def round_stamps(stamps: pd.Series, resolution: str | None) -> pd.Series:
    """Timestamps rounded to ``resolution``: ``"MS"`` the nearest first day of a month,
    else a fixed pandas frequency (``"D"``, ``"s"``); ``None`` leaves them."""
    if not resolution:
        return stamps
    if resolution != "MS":
        return stamps.dt.round(resolution)
    start = stamps.dt.to_period("M").dt.start_time
    after = start + pd.offsets.MonthBegin(1)
    return start.where((stamps - start) <= (after - stamps), after).where(stamps.notna())


def plain_json(value: Any, name: str) -> Any:
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
        return plain_json(value.tolist(), name)
    if isinstance(value, (list, tuple)):
        return [plain_json(v, name) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"TablePreparer.{name}: mapping keys must be strings to be saved as JSON")
        return {k: plain_json(v, name) for k, v in value.items()}
    raise TypeError(f"TablePreparer.{name}: a {type(value).__name__} cannot be saved as JSON")
