"""The augment stage for tables: augment a downstream training set with conditional synthetic rows, and measure the benefit.

The augment stage reads the real train split and the trained synthesizer of the
pipeline (``output.dir/model``), draws synthetic rows *conditioned on the class* of
``data.target`` (``model.sample(k, conditions={target: cls}, seed=...)``: exact for
``tabular_gan``, bounded rejection sampling for ``ctgan``) and writes the real train
split plus those rows, each tagged in a provenance column ``_source`` (``real`` or
``synthetic``), to ``output.dir/augment/augmented.parquet``. How many rows per class:

* ``augment.mode: rebalance`` - every class is lifted to ``round(ratio x majority
  count)`` rows (classes already there get none); ``ratio: 1.0`` equalises the classes.
* ``augment.mode: enlarge`` - ``round((factor - 1) x labelled train rows)`` synthetic
  rows, split across classes in proportion to their real counts (largest remainder,
  so the total is exact): the class mix is kept.

Rows whose target is missing stay in the real part and count towards no class. The
holdout is never read for generation (the model was trained on the train split only)
and never written; its hash is recorded in the manifest.

**Benefit, measured.** For ``augment.seeds`` repeats ``i`` (synthetic draw seed
``augment.seed + i``; downstream model seed ``i``; repeat 0 is the written draw) each
downstream scikit-learn classifier of ``augment.models`` is trained three ways and
tested on the untouched real holdout:

* ``real`` - the real train split alone (the baseline);
* ``augmented`` - real plus the synthetic rows;
* ``reweighted`` - the real split with ``class_weight="balanced"``: the free
  alternative to synthetic rows for class imbalance, reported for comparison.

Scores: balanced accuracy, macro-F1 (over the classes present in the holdout) and the
recall of the minority class (``augment.minority``, default the rarest train class).
Features come from :class:`~synthgen.validation.encoding.MixedEncoder` (ranges of the
real train split), as in :mod:`synthgen.validation.utility`. ``benefit.json`` holds the
per-repeat scores and, per model and metric, mean / sd / min / max of each arm and of
the paired lift ``augmented - real`` (and ``augmented - reweighted``); ``overall``
averages the lift over the models per repeat first. Whichever sign the lift has, it is
reported as measured.

Outputs under ``output.dir/augment/``: ``augmented.parquet``, ``manifest.json``
(counts per class before/after, model, seeds, params hash, source hashes),
``benefit.json`` and ``report.html``; all logged to the pipeline's MLflow run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import pandas as pd

from synthgen.config import AugmentConfig, Params
from synthgen.data.schema import TableSchema
from synthgen.errors import ConfigError, DataError, ModelError
from synthgen.io import data_digest, write_json, write_parquet, write_text
from synthgen.reports.augment import build_augment_report
from synthgen.reports.datasheet import render_augment_datasheet
from synthgen.stages.augment_common import (
    SOURCE_COLUMN, AugmentLayout, class_counts, draw_seed, log_augment, plan_rows, python_value, record_fields,
)
from synthgen.stages.common import Layout, read_parquet, resume_tracker
from synthgen.synthesizers import load
from synthgen.validation.benefit import METRICS, score_once, summarize
from synthgen.validation.encoding import discrete_keys
from synthgen.version import __version__

log = logging.getLogger(__name__)


def synthesize(model: Any, plan: Mapping[Any, int], target: str, seed: int) -> pd.DataFrame:
    """Draw ``plan[cls]`` rows conditioned on ``target == cls`` for every class.

    Each class gets its own seed derived from ``seed``, so the draw is reproducible
    and classes do not share latent noise. Returns the rows in the schema's columns.
    """
    parts = [model.sample(k, conditions={target: cls}, seed=draw_seed(seed, i))
             for i, (cls, k) in enumerate(plan.items()) if k > 0]
    if not parts:
        return model.sample(1, seed=seed).iloc[:0]
    return pd.concat(parts, ignore_index=True)


def combine(real: pd.DataFrame, synthetic: pd.DataFrame) -> pd.DataFrame:
    """Real rows then synthetic rows, with the provenance column :data:`SOURCE_COLUMN`."""
    synthetic = synthetic[list(real.columns)]
    out = pd.concat([real.assign(**{SOURCE_COLUMN: "real"}),
                     synthetic.assign(**{SOURCE_COLUMN: "synthetic"})], ignore_index=True)
    for column in real.columns:  # keep the real dtypes (concat may widen on empty parts)
        if out[column].dtype != real[column].dtype:
            out[column] = out[column].astype(real[column].dtype)
    return out



# -- benefit ---------------------------------------------------------------------------
def measure_benefit(
    real: pd.DataFrame,
    holdout: pd.DataFrame,
    model: Any,
    plan: Mapping[Any, int],
    target: str,
    minority: Any,
    config: AugmentConfig,
    first_draw: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Downstream models on real vs real+synthetic over ``config.seeds`` repeats.

    Args:
        real: the real train split.
        holdout: the real holdout (only ever the test set).
        model: the fitted synthesizer.
        plan: synthetic rows per class (:func:`plan_rows`).
        target: the class column.
        minority: the class whose recall is reported.
        config: the ``augment`` section (``seed``, ``seeds``, ``models``).
        first_draw: the synthetic rows of repeat 0 if already drawn (seed ``config.seed``).

    Returns:
        ``{"protocol", "minority", "records", "models", "overall", "seconds"}``.
    """
    start = time.perf_counter()
    records = []
    for i in range(config.seeds):
        draw_seed = config.seed + i
        synthetic = first_draw if i == 0 and first_draw is not None else synthesize(model, plan, target, draw_seed)
        for row in score_once(real, synthetic, holdout, model.schema, target, minority, list(config.models), i):
            records.append({"seed": i, "draw_seed": draw_seed, **row})
        log.info("augment benefit: repeat %d/%d done", i + 1, config.seeds)
    summary = summarize(records, list(config.models))
    return {
        "measured": True,
        "protocol": {
            "test_set": "holdout (real, untouched)", "repeats": config.seeds, "models": list(config.models),
            "arms": {"real": "real train split", "augmented": "real + synthetic rows",
                     "reweighted": "real train split, class_weight='balanced'"},
            "lift": "augmented - real, paired per repeat", "metrics": list(METRICS),
            "draw_seeds": [config.seed + i for i in range(config.seeds)],
        },
        "minority": python_value(minority),
        **summary,
        "records": records,
        "seconds": time.perf_counter() - start,
    }



# -- the stage -------------------------------------------------------------------------
def check_target(params: Params, schema: TableSchema, train: pd.DataFrame) -> tuple[str, dict[Any, int], Any]:
    """Validate the target and minority against the data; return (target, counts, minority)."""
    target = params.data.target
    if target not in schema:
        raise ConfigError(f"data.target: {target!r} is not a column of the table; columns: {schema.names}")
    spec = schema[target]
    if not spec.modelled or not spec.discrete:
        raise ConfigError(
            f"data.target: {target!r} has kind {spec.kind!r}; augment needs a discrete class column "
            "(categorical or boolean)"
        )
    if SOURCE_COLUMN in train.columns:
        raise DataError(f"column {SOURCE_COLUMN!r} is reserved for the provenance of augmented rows; rename it")
    counts = class_counts(train[target])
    if len(counts) < 2:
        raise DataError(f"data.target: {target!r} has {len(counts)} class(es) in the train split; need at least 2")
    minority = params.augment.minority
    if minority is None:
        minority = list(counts)[-1]
    else:
        keys = dict(zip(discrete_keys(pd.Series(list(counts), dtype=object)), counts))
        key = discrete_keys(pd.Series([minority], dtype=object))[0]
        if key not in keys:
            raise ConfigError(f"augment.minority: {minority!r} is not a class of {target!r}; classes: {list(counts)}")
        minority = keys[key]
    return target, counts, minority


def augment(params: Params) -> dict[str, Any]:
    """Write the augmented train set, its manifest, the measured benefit and a report.
    Raises:
        ConfigError: ``data.target`` unset, not a column or not discrete; ``augment.minority``
            not a class.
        ModelError: no trained model under ``output.dir/model``.
        DataError: the train or holdout split is missing.
    """
    if params.data.target is None:
        raise ConfigError("data.target: required by the augment stage (the class column to rebalance or enlarge)")
    layout = Layout(params.out)
    out = AugmentLayout(params.out)
    if not (layout.model / "synthesizer.json").is_file():
        raise ModelError(f"output.dir: no trained model in {layout.model}; run `synthgen train` first")
    model = load(layout.model)
    train = read_parquet(layout.train, "train split")
    config = params.augment
    holdout = read_parquet(layout.holdout, "holdout split") if config.benefit else None
    target, counts, minority = check_target(params, model.schema, train)
    holdout_hash = data_digest(layout.holdout) if layout.holdout.is_file() else None

    plan = plan_rows(counts, config)
    start = time.perf_counter()
    synthetic = synthesize(model, plan, target, config.seed)
    seconds = time.perf_counter() - start
    augmented = combine(train, synthetic)
    write_parquet(out.augmented, augmented)
    after = class_counts(augmented[target])
    log.info("augment: %s added %d synthetic rows in %.1fs (%s)", config.mode, len(synthetic), seconds,
             ", ".join(f"{c}: {counts[c]} -> {after.get(c, 0)}" for c in counts))

    tracker = resume_tracker(params, layout)
    benefit: dict[str, Any] = {"measured": False}
    if config.benefit:
        benefit = measure_benefit(train, holdout, model, plan, target, minority, config, first_draw=synthetic)
    write_json(out.benefit, benefit)
    manifest = {
        "target": target,
        "mode": config.mode,
        "ratio": config.ratio if config.mode == "rebalance" else None,
        "factor": config.factor if config.mode == "enlarge" else None,
        "classes": {str(c): {"before": counts[c], "added": plan[c], "after": after.get(c, 0)} for c in counts},
        "unlabelled_real_rows": int(train[target].isna().sum()),
        "rows": {"real": len(train), "synthetic": len(synthetic), "total": len(augmented)},
        "provenance_column": SOURCE_COLUMN,
        "columns": list(augmented.columns),
        "model": model.name,
        **record_fields(params, layout.model, layout.train, holdout_hash, out.augmented, seconds, benefit,
                        python_value(minority)),
        "mlflow_run_id": tracker.run_id,
        "synthgen_version": __version__,
    }
    write_json(out.manifest, manifest)
    write_text(out.datasheet, render_augment_datasheet(manifest, benefit))
    write_text(out.report, build_augment_report(manifest, benefit))

    log_augment(tracker, out, config, benefit, len(synthetic), len(augmented))
    return manifest
