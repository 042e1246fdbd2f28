"""The stages of ``data.kind: tabular``: ingest -> train -> generate -> validate.

Each function reads its inputs from and writes its outputs to ``output.dir`` (see
:class:`~synthgen.stages.common.Layout`); what the two modalities share (tracking,
provenance, the verdict, ``published/``, the champion alias) is in
:mod:`synthgen.stages.common`. Every file is written atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from synthgen.config import Params
from synthgen.data.schema import TableSchema
from synthgen.errors import ConfigError, DataError
from synthgen.io import write_json, write_parquet, write_text
from synthgen.reports.datasheet import KEY_METRICS, render_datasheet
from synthgen.stages.common import (
    Layout, begin_stage, conclude, load_generation, model_meta, provenance, read_parquet, record_verdict, resume_tracker,
    train_and_track,
)
from synthgen.synthesizers import REGISTRY, load
from synthgen.training.callbacks import Phases

log = logging.getLogger(__name__)


def ingest(params: Params) -> dict[str, Any]:
    """Read ``data.path``, infer and save the schema, write the train and holdout splits."""
    from synthgen.data.ingest import ingest as ingest_table

    layout = Layout(params.out)
    schema, train, holdout = ingest_table(params.data)
    begin_stage(layout.schema)  # schema.json, written last, commits the splits
    write_parquet(layout.train, train)
    write_parquet(layout.holdout, holdout)
    schema.save(layout.schema)
    log.info("ingest: %d train rows, %d holdout rows, %d columns", len(train), len(holdout), len(schema.columns))
    return {"n_train": len(train), "n_holdout": len(holdout), "columns": len(schema.columns)}


def train(params: Params) -> dict[str, Any]:
    """Fit ``model.name`` on the train split; save ``model/`` and ``losses.csv``."""
    layout = Layout(params.out)
    schema = TableSchema.load(layout.schema)
    train_split = read_parquet(layout.train, "train split")
    if params.privacy.epsilon is not None and not params.data.public_bounds:
        raise ConfigError(
            "data.public_bounds: false with privacy.epsilon set: category sets and ranges "
            "would have to be released privately, which synthgen does not do yet"
        )
    synthesizer = REGISTRY[params.model.name](
        schema, params.model, params.privacy, max_categories=params.data.max_categories,
        checkpoint_dir=layout.checkpoints if params.model.checkpoint_every else None,
    )
    summary, _ = train_and_track(params, layout, synthesizer, train_split)
    return summary


def generate(params: Params) -> dict[str, Any]:
    """Sample ``generate.rows`` rows from the saved model into ``synthetic.parquet``."""
    layout = Layout(params.out)
    filtered = params.validate_.privacy_filter is not None
    phases = Phases("generate", ["load", "sample", *(["privacy filter"] if filtered else []), "write"])
    with phases("load"):
        model = load(layout.model)
    rows = params.generate.rows or model.n_train_
    seed = params.generate.seed if params.generate.seed is not None else params.model.seed
    with phases("sample"):
        frame = model.sample(rows, conditions=params.generate.conditions or None, seed=seed)
    dropped = 0
    if filtered:
        from synthgen.validation.privacy import privacy_filter

        train_split = read_parquet(layout.train, "train split")
        with phases("privacy filter"):
            frame, dropped = privacy_filter(frame, train_split, params.validate_.privacy_filter, model.schema,
                                            max_categories=params.data.max_categories)
        frame = frame.reset_index(drop=True)
        log.info("privacy filter: dropped %d of %d rows closer than %g to a training row",
                 dropped, rows, params.validate_.privacy_filter)
    with phases("write"):
        begin_stage(layout.generation)  # generation.json, written last, commits the data
        write_parquet(layout.synthetic, frame)
    tracker = resume_tracker(params, layout)
    generation = {
        "kind": params.data.kind,
        "synthetic": layout.synthetic.name,
        "rows": len(frame),
        "columns": list(frame.columns),
        **provenance(params, layout, model, layout.synthetic, seed, tracker),
        "privacy_filter": {"threshold": params.validate_.privacy_filter, "dropped": dropped},
        "privacy": {"epsilon": params.privacy.epsilon, **model.extra_meta()},
    }
    write_json(layout.generation, generation)  # the data goes to MLflow with its verdict (validate)
    log.info("generate: %d rows -> %s", len(frame), layout.synthetic)
    return generation


def validate(params: Params, synthetic: str | Path | None = None, out: str | Path | None = None) -> dict[str, Any]:
    """Score synthetic data against the real train split; write the verdict.

    With ``synthetic=None`` the pipeline's own ``synthetic.parquet`` is scored and the
    run's ``validation.json`` and ``manifest.json`` are written. With a path (an audit
    of data from elsewhere) the verdict goes to ``out`` (default: beside that file).
    """
    from synthgen.reports.tables import build_public_report, build_report
    from synthgen.validation.verdict import validate_synthetic

    layout = Layout(params.out)
    schema = TableSchema.load(layout.schema)
    train_split = read_parquet(layout.train, "train split")
    audit = synthetic is not None
    if audit:
        from synthgen.data.ingest import read_table
        from synthgen.data.schema import conform

        path = Path(synthetic)
        frame = read_table(path)
        missing = [c for c in schema.names if c not in frame.columns]
        if missing:
            raise DataError(f"{path}: lacks columns {missing} of the schema")
        frame = conform(frame[schema.names], schema)
    else:
        frame = read_parquet(layout.synthetic, "synthetic data")
        generation = load_generation(layout, layout.synthetic)  # the data is the one generate recorded
        begin_stage(layout.manifest)  # manifest.json, written with the verdict, commits this stage
    extra: dict[str, float] = {}
    if not audit and generation.get("privacy", {}).get("epsilon_spent") is not None:
        extra["epsilon_spent"] = generation["privacy"]["epsilon_spent"]
    holdout = read_parquet(layout.holdout, "holdout split") if layout.holdout.is_file() else None
    scoring = ["fidelity", "gx", "detection", "utility", "privacy"]
    phases = Phases("validate", scoring if audit else [*scoring, "report", "track"])
    report, gx_result = validate_synthetic(
        train_split, frame, schema, params.validate_, extra_metrics=extra, holdout=holdout,
        target=params.data.target, sensitive_columns=params.validate_.sensitive,
        docs_dir=None if audit else layout.data_docs, phases=phases,
        max_categories=params.data.max_categories,  # the level cap training used: bounded encodings
    )
    if audit:
        target = Path(out) if out else Path(synthetic).with_suffix(".validation.json")
        write_json(target, report)
        return report
    write_json(layout.gx_result, gx_result)
    manifest, tracker = record_verdict(params, layout, report, generation, ("quality_score",), KEY_METRICS)
    write_text(layout.datasheet, render_datasheet(manifest, schema, model_meta(layout), report))
    losses = pd.read_csv(layout.losses) if layout.losses.is_file() else None
    with phases("report"):
        write_text(layout.report, build_report(train_split, frame, schema, report, losses))  # for the data owner
        write_text(layout.public_report, build_public_report(frame, schema, report, losses))  # published: no real row
    with phases("track"):
        conclude(params, layout, tracker, report, manifest, layout.synthetic,
                 (layout.validation, layout.gx_result, layout.manifest, layout.datasheet, layout.report,
                  layout.public_report), synthetic=(layout.synthetic,))
    log.info("validate: %s (quality_score=%.3f)", "passed" if report["passed"] else "FAILED",
             report["metrics"].get("quality_score") or float("nan"))
    return report
