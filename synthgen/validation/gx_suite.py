"""Great Expectations (GX Core 1.x) checks that a synthetic table keeps the real table's rules.

:func:`build_suite` profiles the real train split into an expectation suite:

* the column list, in order;
* continuous/integer columns are numeric (a pandas numeric dtype);
* continuous/integer/datetime values lie within the real min and max (datetimes are
  compared as epoch seconds);
* categorical/boolean values are among the real levels;
* non-null rates: columns without missing values must have none; a column missing a
  share ``m`` of its values must be non-null in at least ``1 - m - null_tolerance`` of
  rows (skipped when that is not above 0);
* constant columns hold their one value (or only nulls); id columns that are unique
  in the real data must be unique;
* distributions (:class:`Tolerances`): numeric means within ``mean`` real standard
  deviations, standard deviations within a factor ``1 +/- std``, medians within
  ``median`` real standard deviations; category frequencies within a KL divergence of
  ``frequency_kl`` nats of the real ones. (GX's quantile-range expectation is not used:
  in GX 1.24 its result holds a numpy bool that the result store cannot serialize.)

:func:`run_suite` validates a frame against it with a real GX ephemeral context and
returns a JSON-ready summary. ``great_expectations`` is imported lazily (~5 s).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from synthgen.data.schema import TableSchema, coerce_column
from synthgen.validation.fidelity import to_numeric

if TYPE_CHECKING:
    import great_expectations as gx

NULL_TOLERANCE = 0.05


@dataclass(frozen=True)
class Tolerances:
    """Slack of the distribution-level expectations (``validate.*_tolerance`` in params)."""

    mean: float = 0.3  # |mean_syn - mean_real| <= mean * std_real
    std: float = 0.3  # std_syn within std_real * (1 -/+ std)
    median: float = 0.4  # |median_syn - median_real| <= median * std_real
    frequency_kl: float = 0.1  # KL(real || synthetic) of category frequencies, nats
_NUMERIC_DTYPES = [
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
    "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
    "Float32", "Float64",
]  # fmt: skip
_META_KEY = "synthgen"


def _gx() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations

    return great_expectations


def ephemeral_context() -> Any:
    """A fresh in-memory GX data context (nothing on disk), progress bars off.

    Creating one takes milliseconds once ``great_expectations`` is imported (~5 s).
    """
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _py(value: Any) -> Any:
    """A plain Python scalar (GX serializes kwargs to JSON)."""
    return value.item() if isinstance(value, np.generic) else value


def _epoch_frame(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """A copy of ``frame`` with the datetime ``columns`` as float epoch seconds."""
    out = frame.copy()
    for col in columns:
        if col in out.columns:
            values = out[col]
            if not pd.api.types.is_datetime64_any_dtype(values):
                values = pd.to_datetime(values, errors="coerce", format="mixed")
            out[col] = to_numeric(values)
    return out


def build_suite(
    real: pd.DataFrame,
    schema: TableSchema,
    name: str = "synthgen",
    null_tolerance: float = NULL_TOLERANCE,
    tolerances: Tolerances = Tolerances(),
) -> gx.ExpectationSuite:
    """Profile the real train split into a GX expectation suite.

    Args:
        real: the real train split, with every schema column.
        schema: the table schema (kinds decide the expectations).
        name: the suite name; default ``"synthgen"``.
        null_tolerance: slack on the non-null share of columns that have missing
            values; default 0.05.
        tolerances: slack of the distribution expectations; default :class:`Tolerances`.

    Returns:
        An unsaved ``gx.ExpectationSuite``; ``suite.meta["synthgen"]["datetime_columns"]``
        lists the columns :func:`run_suite` converts to epoch seconds.
    """
    gx = _gx()
    E = gx.expectations
    datetimes = [c.name for c in schema.columns if c.kind == "datetime"]
    expectations: list[Any] = [E.ExpectTableColumnsToMatchOrderedList(column_list=schema.names)]
    for spec in schema.columns:
        col = spec.name
        values = coerce_column(real[col], spec)
        present = values.dropna()
        missing = float(values.isna().mean()) if len(values) else 0.0
        if spec.kind in ("continuous", "integer", "datetime"):
            if spec.kind != "datetime":
                expectations.append(E.ExpectColumnValuesToBeInTypeList(column=col, type_list=_NUMERIC_DTYPES))
            nums = to_numeric(present)
            if len(nums):
                lo, hi = float(nums.min()), float(nums.max())
                if spec.kind == "integer":
                    lo, hi = int(lo), int(hi)  # type: ignore[assignment]
                expectations.append(E.ExpectColumnValuesToBeBetween(column=col, min_value=lo, max_value=hi))
            if len(nums) >= 2 and float(np.std(nums)) > 0:
                expectations += _distribution(E, col, np.asarray(nums, dtype=float), tolerances)
        elif spec.kind in ("categorical", "boolean"):
            levels = [_py(v) for v in pd.unique(present)]
            if levels:
                expectations.append(E.ExpectColumnValuesToBeInSet(column=col, value_set=levels))
            if len(levels) >= 2:
                freq = present.value_counts(normalize=True)
                expectations.append(E.ExpectColumnKLDivergenceToBeLessThan(
                    column=col, threshold=tolerances.frequency_kl,
                    partition_object={"values": [_py(v) for v in freq.index],
                                      "weights": [float(w) for w in freq.to_numpy()]},
                ))
        elif spec.kind == "constant":
            if len(present):
                value = _py(present.iloc[0])
                expectations.append(E.ExpectColumnValuesToBeInSet(column=col, value_set=[value]))
            else:
                expectations.append(E.ExpectColumnValuesToBeNull(column=col))
            continue
        elif spec.kind == "id":
            if len(present) and present.is_unique:
                expectations.append(E.ExpectColumnValuesToBeUnique(column=col))
        if missing == 0.0:
            expectations.append(E.ExpectColumnValuesToNotBeNull(column=col))
        elif 1.0 - missing - null_tolerance > 0:
            mostly = round(1.0 - missing - null_tolerance, 6)
            expectations.append(E.ExpectColumnValuesToNotBeNull(column=col, mostly=mostly))
    return gx.ExpectationSuite(
        name=name,
        expectations=expectations,
        meta={_META_KEY: {"datetime_columns": datetimes}},
    )


def _distribution(E: Any, col: str, nums: np.ndarray, tol: Tolerances) -> list[Any]:
    mean, std, median = float(nums.mean()), float(nums.std()), float(np.median(nums))
    return [
        E.ExpectColumnMeanToBeBetween(column=col, min_value=mean - tol.mean * std, max_value=mean + tol.mean * std),
        E.ExpectColumnStdevToBeBetween(column=col, min_value=std * (1 - tol.std), max_value=std * (1 + tol.std)),
        E.ExpectColumnMedianToBeBetween(
            column=col, min_value=median - tol.median * std, max_value=median + tol.median * std
        ),
    ]


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf as None, numpy scalars and arrays as Python, dates as ISO text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return pd.Timestamp(value).isoformat()
    return str(value)


def _describe(res: dict[str, Any]) -> str:
    """One line on a failed expectation: type, column, and what was seen."""
    cfg = res.get("expectation_config", {})
    kwargs = cfg.get("kwargs", {})
    text = cfg.get("type", "expectation")
    if "column" in kwargs:
        text += f"({kwargs['column']})"
    out = res.get("result") or {}
    info = res.get("exception_info") or {}
    # GX puts one exception at the top level, or several keyed by metric id.
    errors = [info] + [v for v in info.values() if isinstance(v, dict)]
    messages = [str(e.get("exception_message")) for e in errors if e.get("raised_exception")]
    if messages:
        text += f": error: {messages[0][:120]}"
    elif out.get("unexpected_count") is not None:
        pct = out.get("unexpected_percent") or 0.0
        sample = (out.get("partial_unexpected_list") or [])[:3]
        text += f": {out['unexpected_count']} unexpected ({pct:.2f}%), e.g. {sample}"
    elif "observed_value" in out:
        text += f": observed {str(out['observed_value'])[:120]}"
    return text


def run_suite(
    suite: gx.ExpectationSuite | dict[str, Any],
    synthetic: pd.DataFrame,
    context: Any = None,
    docs_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Validate a frame against a suite with a real GX run (ephemeral context, pandas).

    Datetime columns listed in the suite's meta are converted to epoch seconds in a
    copy of ``synthetic`` first.

    Args:
        suite: an ``ExpectationSuite`` from :func:`build_suite`, or its ``to_json_dict()``.
        synthetic: the frame to validate.
        context: a GX data context to reuse (see :func:`ephemeral_context`); default a
            fresh ephemeral one. The temporary data source, suite and validation
            definition added to it are removed afterwards.
        docs_dir: if given, GX Data Docs (HTML) of this validation are built and copied
            there (replaced atomically).

    Returns:
        JSON-ready ``{"success", "success_rate", "n_expectations", "n_failed",
        "failed": [one line per failed expectation], "result": GX's to_json_dict()}``;
        ``success_rate`` is 1.0 for a suite with no expectations.
    """
    gx = _gx()
    spec = suite if isinstance(suite, dict) else suite.to_json_dict()
    meta = spec.get("meta") or {}
    datetimes = list((meta.get(_META_KEY) or {}).get("datetime_columns", []))
    frame = _epoch_frame(synthetic, datetimes)

    context = context if context is not None else ephemeral_context()
    # Unique names so one context can run many validations.
    tag = os.urandom(6).hex()
    source = context.data_sources.add_pandas(f"synthgen_{tag}")
    batch = source.add_dataframe_asset("table").add_batch_definition_whole_dataframe("all")
    gx_suite = gx.ExpectationSuite(
        name=f"{spec.get('name', 'synthgen')}_{tag}",
        expectations=[
            {"type": e["type"], "kwargs": e.get("kwargs", {}), "meta": e.get("meta") or {}}
            for e in spec.get("expectations", [])
        ],
        meta=meta,
    )
    gx_suite = context.suites.add(gx_suite)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"validate_{tag}", data=batch, suite=gx_suite)
    )
    try:
        result = json_safe(
            definition.run(batch_parameters={"dataframe": frame}, result_format="BASIC").to_json_dict()
        )
        if docs_dir is not None:
            _copy_data_docs(context, docs_dir)
    finally:
        context.validation_definitions.delete(definition.name)
        context.suites.delete(gx_suite.name)
        context.data_sources.delete(source.name)
    results = result.get("results", [])
    failed = [r for r in results if not r.get("success")]
    n = len(results)
    return {
        "success": bool(result.get("success")) and not failed,
        "success_rate": (n - len(failed)) / n if n else 1.0,
        "n_expectations": n,
        "n_failed": len(failed),
        "failed": [_describe(r) for r in failed],
        "result": result,
    }


def _copy_data_docs(context: Any, docs_dir: str | os.PathLike) -> None:
    import shutil
    from pathlib import Path
    from urllib.parse import unquote, urlparse

    from synthgen.io import atomic_path

    sites = context.build_data_docs()
    if not sites:
        return
    index = Path(unquote(urlparse(next(iter(sites.values()))).path))
    with atomic_path(docs_dir) as tmp:
        shutil.copytree(index.parent, tmp)
