"""The validation verdict: metrics against the ``validate`` thresholds of params.yaml.

Contract of the verdict (``validation.json``)::

    {"passed": bool,
     "metrics": {name: number | null},
     "checks": [{"name", "value", "threshold", "passed", "kind": "min" | "max"}],
     "fidelity": {...}, "gx": {...}}     # details, from validate_synthetic only

Metrics computed by :func:`validate_synthetic`:

* ``quality_score``, ``column_shapes``, ``column_pair_trends``: SDMetrics-style
  fidelity in [0, 1] (see :mod:`synthgen.validation.fidelity`);
* ``gx_success_rate``: share of Great Expectations checks passed, in [0, 1];
* ``gx_failed``: number of Great Expectations checks failed;
* ``detection_auc``: cross-validated real-vs-synthetic classifier AUC
  (:mod:`synthgen.validation.detection`);
* ``tstr_score``, ``trtr_score``, ``tstr_ratio``: train-synthetic-test-real utility for
  the target (:mod:`synthgen.validation.utility`; None without target or holdout);
* privacy (:mod:`synthgen.validation.privacy`): ``exact_copy_rate``,
  ``dcr_synthetic_median``, ``dcr_holdout_median``, ``dcr_baseline_protection``,
  ``dcr_overfitting_share``, ``dcr_overfitting_protection``, ``nndr``, ``mia_auc``,
  ``mia_auc_distance``, ``mia_auc_density``, ``attribute_risk`` and
  ``attribute_risk_<col>`` per sensitive column (holdout-based ones None without holdout).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pandas as pd

from synthgen.config import ValidateConfig
from synthgen.data.schema import TableSchema, coerce_column
from synthgen.errors import ConfigError, DataError
from synthgen.validation.fidelity import fidelity_report
from synthgen.validation.detection import detection_report
from synthgen.validation.encoding import MAX_CATEGORIES
from synthgen.validation.gx_suite import Tolerances, build_suite, json_safe, run_suite
from synthgen.validation.privacy import PRIVACY_METRICS, privacy_report
from synthgen.validation.utility import UTILITY_METRICS, utility_report

MIN_SYNTHETIC_ROWS = 10  # fewer synthetic rows are not validated (the same floor as ingest's real rows)
METRICS = (
    "quality_score", "column_shapes", "column_pair_trends", "gx_success_rate", "gx_failed",
    "detection_auc", *UTILITY_METRICS, *PRIVACY_METRICS,
)  # fmt: skip


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def evaluate(metrics: dict[str, float | None], validate_cfg: ValidateConfig) -> dict[str, Any]:
    """Check metrics against floors (``validate.min``) and ceilings (``validate.max``).

    A metric that is undefined (None or NaN, e.g. pair trends of a one-column table)
    fails every check on it.

    Args:
        metrics: metric name to value.
        validate_cfg: the ``validate`` section; default floors are quality_score >= 0.6
            and gx_success_rate >= 0.8.

    Returns:
        ``{"passed", "metrics", "checks"}``; ``passed`` is True when every check passes
        (also when there are none).

    Raises:
        ConfigError: a threshold names a metric that was not computed.
    """
    clean = {str(k): _number(v) for k, v in metrics.items()}
    checks = []
    for kind, thresholds in (("min", validate_cfg.min), ("max", validate_cfg.max)):
        for name, threshold in thresholds.items():
            if name not in clean:
                raise ConfigError(
                    f"validate.{kind}.{name}: unknown metric; choose one of {sorted(clean)}"
                )
            value = clean[name]
            ok = value is not None and (value >= threshold if kind == "min" else value <= threshold)
            checks.append(
                {"name": name, "value": value, "threshold": float(threshold), "passed": ok, "kind": kind}
            )
    return {"passed": all(c["passed"] for c in checks), "metrics": clean, "checks": checks}


def _check_columns(frame: pd.DataFrame, schema: TableSchema, what: str) -> None:
    names = [str(c) for c in frame.columns]
    missing = [c for c in schema.names if c not in names]
    extra = [c for c in names if c not in schema]
    if missing:
        raise DataError(f"{what} table lacks column {missing[0]!r} of the schema")
    if extra:
        raise DataError(f"{what} table has column {extra[0]!r}, which is not in the schema")


def validate_synthetic(
    real_train: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    validate_cfg: ValidateConfig,
    suite: Any = None,
    extra_metrics: dict[str, float] | None = None,
    holdout: pd.DataFrame | None = None,
    target: str | None = None,
    sensitive_columns: list[str] | tuple[str, ...] | None = None,
    docs_dir: str | Path | None = None,
    phases: Any = None,
    max_categories: int | None = MAX_CATEGORIES,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score a synthetic table against the real train split and give the verdict.

    Args:
        real_train: the real train split.
        synthetic: the synthetic table (same columns as the schema).
        schema: the table schema.
        validate_cfg: thresholds of the verdict.
        suite: a GX suite (or its JSON dict) to use; default one built from
            ``real_train`` by :func:`~synthgen.validation.gx_suite.build_suite`.
        extra_metrics: figures known from elsewhere (e.g. ``epsilon_spent`` from
            training) that join the metrics and can be given thresholds.
        docs_dir: where GX Data Docs (HTML) of the validation are written; default
            none are built.
        holdout: the real holdout split (never trained on); needed by utility and the
            holdout-based privacy metrics, which are None without it.
        target: the utility target; default ``schema.target``.
        sensitive_columns: columns scored for attribute-inference risk; default
            ``validate_cfg.sensitive``.
        phases: a :class:`~synthgen.training.callbacks.Phases` (or any callable
            giving a context manager per phase name) that times and reports the
            scoring phases ``fidelity``, ``gx``, ``detection``, ``utility``,
            ``privacy``; default ``None`` (silent).
        max_categories: the level cap of training (``data.max_categories``; default
            its default, 500): detection, utility and privacy encode a categorical
            with more levels as its ``max_categories - 1`` most frequent real levels and
            one "other" level, so memory stays bounded whatever the cardinality
            (privacy distances stay exact, see :mod:`synthgen.validation.encoding`);
            ``None`` keeps every level.

    Returns:
        ``(verdict, gx_result)``: the JSON-ready verdict (see the module docstring)
        with ``fidelity``, ``gx``, ``detection``, ``utility`` and ``privacy`` details,
        and GX's full JSON result.

    Raises:
        DataError: a table lacks a schema column or has one the schema does not know, or
            the synthetic table has fewer than :data:`MIN_SYNTHETIC_ROWS` rows.
        ConfigError: a threshold names an unknown metric, or a sensitive column is not
            a modelled column.
    """
    extra = dict(extra_metrics or {})
    target = schema.target if target is None else target
    sensitive = list(validate_cfg.sensitive if sensitive_columns is None else sensitive_columns)
    modelled = [c.name for c in schema.columns if c.modelled]
    for col in sensitive:
        if col not in modelled:
            raise ConfigError(f"validate.sensitive: {col!r} is not a modelled column; choose from {modelled}")
    per_column = [f"attribute_risk_{c}" for c in sensitive]
    evaluate(dict.fromkeys([*METRICS, *per_column, *extra], 0.0), validate_cfg)  # fail fast on unknown names
    _check_columns(real_train, schema, "real")
    _check_columns(synthetic, schema, "synthetic")
    if len(synthetic) < MIN_SYNTHETIC_ROWS:  # the neighbour-based privacy attacks need a few rows
        raise DataError(f"synthetic table has {len(synthetic)} rows; validating it needs at least "
                        f"{MIN_SYNTHETIC_ROWS} (generate.rows)")
    if holdout is not None:
        _check_columns(holdout, schema, "holdout")
    phase = phases if phases is not None else (lambda name: nullcontext())
    with phase("fidelity"):
        fidelity = fidelity_report(real_train, synthetic, schema)
    parsed = synthetic.copy()  # text dates/booleans parsed as the schema says; order kept
    for spec in schema.columns:
        parsed[spec.name] = coerce_column(parsed[spec.name], spec)
    with phase("gx"):
        if suite is None:
            tolerances = Tolerances(
                mean=validate_cfg.mean_tolerance, std=validate_cfg.std_tolerance,
                median=validate_cfg.median_tolerance, frequency_kl=validate_cfg.frequency_kl,
            )
            suite = build_suite(real_train, schema, tolerances=tolerances)
        gx = run_suite(suite, parsed, docs_dir=docs_dir)
    metrics = {
        "quality_score": fidelity["quality_score"],
        "column_shapes": fidelity["column_shapes"],
        "column_pair_trends": fidelity["column_pair_trends"],
        "gx_success_rate": gx["success_rate"],
        "gx_failed": gx["n_failed"],
    }
    with phase("detection"):
        detection = detection_report(real_train, synthetic, schema, max_categories=max_categories)
    with phase("utility"):
        utility = utility_report(real_train, holdout, synthetic, schema, target, max_categories=max_categories)
    with phase("privacy"):
        privacy = privacy_report(real_train, synthetic, schema, holdout, sensitive, max_categories=max_categories)
    metrics["detection_auc"] = detection["detection_auc"]
    metrics.update(utility["metrics"])
    metrics.update(privacy["metrics"])
    metrics.update(extra)
    verdict = evaluate(metrics, validate_cfg)
    verdict["fidelity"] = fidelity
    verdict["detection"] = detection
    verdict["utility"] = {k: v for k, v in utility.items() if k != "metrics"}
    verdict["privacy"] = {k: v for k, v in privacy.items() if k != "metrics"}
    verdict["gx"] = {k: v for k, v in gx.items() if k != "result"}
    return json_safe(verdict), gx["result"]
