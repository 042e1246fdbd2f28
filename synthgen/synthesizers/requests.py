"""Sampling requests: conditions in their JSON form, ``--where`` parsing, and
:class:`SampleRequest` frames, shared by ``synthgen sample`` and the MLflow pyfunc
generator (:mod:`synthgen.tracking.pyfunc`).

Conditions have one JSON-friendly form everywhere: ``{"col": value}`` for an exact
value and ``{"col": {"low": a, "high": b}}`` (inclusive) for a numeric range.

A server answers a request frame in memory, so :func:`check_request_size` caps what one
call may ask for: :data:`MAX_REQUEST_ROWS` table rows or :data:`MAX_REQUEST_IMAGES`
images, summed over the request rows (the MLflow pyfunc enforces it; ``synthgen sample``
writes any number of rows to a file in chunks instead).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from synthgen.errors import ConditionError

if TYPE_CHECKING:
    from synthgen.data.schema import TableSchema
    from synthgen.synthesizers.base import Synthesizer


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def normalize_conditions(conditions: Any) -> dict[str, Any] | None:
    """Conditions in their JSON form -> the form ``Synthesizer.sample`` takes.

    Args:
        conditions: ``None`` / NaN / ``""`` (no conditions), a JSON string, or a dict
            ``{col: value}`` where a value may be ``{"low": a, "high": b}`` or ``[a, b]``
            (a numeric range, inclusive).

    Returns:
        ``{col: value or (low, high)}``, or ``None`` when there are no conditions.

    Raises:
        ConditionError: not JSON, not a mapping, or a range without ``low``/``high``.
    """
    if _missing(conditions) or (isinstance(conditions, str) and not conditions.strip()):
        return None
    if isinstance(conditions, str):
        try:
            conditions = json.loads(conditions)
        except json.JSONDecodeError as exc:
            raise ConditionError(f"conditions: not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(conditions, Mapping):
        raise ConditionError(f"conditions: expected an object {{column: value}}, got {type(conditions).__name__}")
    out: dict[str, Any] = {}
    for column, value in conditions.items():
        if isinstance(value, Mapping):
            if set(value) != {"low", "high"}:
                raise ConditionError(f"condition on {column!r}: a range needs exactly 'low' and 'high', got {sorted(value)}")
            out[column] = (value["low"], value["high"])
        elif isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise ConditionError(f"condition on {column!r}: a range is [low, high], got {list(value)}")
            out[column] = (value[0], value[1])
        else:
            out[column] = value
    return out or None


def _number(column: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConditionError(f"--where {column}={text}: {text!r} is not a number") from None


def parse_where(items: Iterable[str], schema: TableSchema) -> dict[str, Any]:
    """``["species=Adelie", "bill_depth_mm=15..18"]`` -> typed conditions for ``schema``.

    Values are parsed against the column's kind: numbers (``a..b`` is an inclusive
    range), booleans (``true``/``false``/``1``/``0``/``yes``/``no``), categories
    (matched against the training levels by their text), datetimes (kept as text).

    Raises:
        ConditionError: no ``=``, unknown column, or a value of the wrong kind.
    """
    conditions: dict[str, Any] = {}
    for item in items:
        column, sep, text = item.partition("=")
        column, text = column.strip(), text.strip()
        if not sep or not column:
            raise ConditionError(f"--where {item!r}: expected column=value, e.g. species=Adelie")
        if column not in schema:
            raise ConditionError(f"--where {item!r}: unknown column {column!r}; columns: {schema.names}")
        spec = schema[column]
        if spec.kind in ("continuous", "integer"):
            if ".." in text:
                low, _, high = text.partition("..")
                conditions[column] = (_number(column, low), _number(column, high))
            else:
                conditions[column] = _number(column, text)
        elif spec.kind == "boolean":
            flags = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
            if text.lower() not in flags:
                raise ConditionError(f"--where {item!r}: {column!r} is boolean; use true or false")
            conditions[column] = flags[text.lower()]
        elif spec.kind == "categorical":
            levels = spec.categories or []
            match = [level for level in levels if str(level) == text]
            if not match:
                shown = ", ".join(map(str, levels[:10])) + (" ..." if len(levels) > 10 else "")
                raise ConditionError(f"--where {item!r}: {column!r} has no level {text!r}; levels: {shown}")
            conditions[column] = match[0]
        else:  # datetime, id, constant: the synthesizer accepts or refuses them itself
            conditions[column] = text
    return conditions


@dataclass(frozen=True)
class SampleRequest:
    """One draw: ``rows`` rows, an optional ``seed`` and optional ``conditions``.

    ``allow_unvalidated`` (default ``False``) asks a server of generators (the MLflow
    pyfunc) to draw even when the generator's verdict failed or is missing.
    """

    rows: int
    seed: int | None = None
    conditions: dict[str, Any] | None = None
    allow_unvalidated: bool = False


def _integer(value: Any, what: str, row: int) -> int | None:
    if _missing(value):
        return None
    if isinstance(value, bool) or not float(value).is_integer():
        raise ConditionError(f"request row {row}: {what} must be an integer, got {value!r}")
    return int(value)


_FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _flag(value: Any, what: str, row: int) -> bool:
    """A boolean request field: missing -> False; bool, 0/1 or true/false/yes/no text."""
    if _missing(value):
        return False
    if isinstance(value, str) and value.strip().lower() in _FLAGS:
        return _FLAGS[value.strip().lower()]
    if not isinstance(value, str) and value in (0, 1):  # bool, numpy bool, 0 / 1
        return bool(value)
    raise ConditionError(f"request row {row}: {what} must be true or false, got {value!r}")


REQUEST_COLUMNS = ("rows", "seed", "conditions", "allow_unvalidated")
MAX_REQUEST_ROWS = 1_000_000  # most table rows one served call returns, all request rows together
MAX_REQUEST_IMAGES = 10_000  # most images one served call returns


def requests_from_frame(frame: pd.DataFrame) -> list[SampleRequest]:
    """One :class:`SampleRequest` per row of a frame with columns ``rows`` (required),
    ``seed``, ``conditions`` (optional; see :func:`normalize_conditions`) and
    ``allow_unvalidated`` (optional boolean; missing means ``False``).

    Raises:
        ConditionError: no ``rows`` column, an unknown column, or a bad value.
    """
    if "rows" not in frame.columns:
        raise ConditionError(f"request frame needs a 'rows' column; got {list(frame.columns)}")
    unknown = sorted(set(frame.columns) - set(REQUEST_COLUMNS))
    if unknown:
        raise ConditionError(f"request frame: unknown columns {unknown}; expected {', '.join(REQUEST_COLUMNS)}")
    requests = []
    for i, record in enumerate(frame.to_dict("records")):
        rows = _integer(record["rows"], "rows", i)
        if rows is None or rows < 1:
            raise ConditionError(f"request row {i}: rows must be a positive integer, got {record['rows']!r}")
        requests.append(SampleRequest(rows, _integer(record.get("seed"), "seed", i),
                                      normalize_conditions(record.get("conditions")),
                                      _flag(record.get("allow_unvalidated"), "allow_unvalidated", i)))
    return requests


def check_request_size(model: Synthesizer, requests: Iterable[SampleRequest]) -> int:
    """The records ``requests`` ask for in all, if a server may answer them in one call.

    Raises:
        ConditionError: more than :data:`MAX_REQUEST_ROWS` rows (:data:`MAX_REQUEST_IMAGES`
            for an image model), summed over the requests.
    """
    total = sum(r.rows for r in requests)
    images = getattr(model, "data_kind", "tabular") == "image"
    limit, unit = (MAX_REQUEST_IMAGES, "images") if images else (MAX_REQUEST_ROWS, "rows")
    if total > limit:
        raise ConditionError(
            f"the request asks for {total:,} {unit} in all; one call returns at most {limit:,} "
            f"({'MAX_REQUEST_IMAGES' if images else 'MAX_REQUEST_ROWS'}): split it into several calls, or write "
            "large draws to a file with `synthgen sample --rows N --out FILE`"
        )
    return total


def sample_requests(model: Synthesizer, requests: Iterable[SampleRequest]) -> pd.DataFrame:
    """Draw every request from ``model`` and concatenate the frames in request order."""
    frames = [as_frame(model, model.sample(r.rows, conditions=r.conditions, seed=r.seed)) for r in requests]
    if not frames:
        raise ConditionError("no sampling requests given")
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def as_frame(model: Synthesizer, drawn: Any) -> pd.DataFrame:
    """A draw as a frame: tables as they are; images as one row per image with its class
    name (``label``) and its uint8 H x W x C array (``image``), the pyfunc's answer."""
    if isinstance(drawn, pd.DataFrame):
        return drawn
    return pd.DataFrame({"label": [model.classes_[i] for i in drawn.labels], "image": list(drawn.images)})
