"""The pipeline stages: ingest -> train -> generate -> validate.

Each stage is a function of the validated :class:`~synthgen.config.Params` that reads
its inputs from and writes its outputs to ``output.dir`` (see :class:`Layout`). The
CLI, the DVC stages (which call the CLI) and the Prefect flows all call these same
functions. Every file is written atomically.

One MLflow run spans a pipeline run: the train stage creates it and records its id in
``tracking.json``; generate and validate log into the same run.
"""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from synthgen import __version__
from synthgen.config import Params
from synthgen.data.schema import TableSchema
from synthgen.datasheet import KEY_METRICS, render_datasheet
from synthgen.errors import ConfigError, DataError, ModelError
from synthgen.io import atomic_path, file_hash, run_params_hash, source_hash, write_json, write_parquet, write_text
from synthgen.tracking import NullTracker, make_tracker
from synthgen.training.callbacks import Phases

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    """Where each artifact lives under ``output.dir``."""

    root: Path

    @property
    def schema(self) -> Path:
        return self.root / "schema.json"

    @property
    def train(self) -> Path:
        return self.root / "data" / "train.parquet"

    @property
    def holdout(self) -> Path:
        return self.root / "data" / "holdout.parquet"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def losses(self) -> Path:
        return self.root / "losses.csv"

    @property
    def tracking(self) -> Path:
        return self.root / "tracking.json"

    @property
    def synthetic(self) -> Path:
        return self.root / "synthetic.parquet"

    @property
    def generation(self) -> Path:
        return self.root / "generation.json"

    @property
    def validation(self) -> Path:
        return self.root / "validation.json"

    @property
    def gx_result(self) -> Path:
        return self.root / "gx_result.json"

    @property
    def data_docs(self) -> Path:
        return self.root / "data_docs"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def datasheet(self) -> Path:
        return self.root / "DATASHEET.md"

    @property
    def published(self) -> Path:
        """The consumer-facing copy: only data whose verdict passed ever lands here."""
        return self.root / "published"


def _read_parquet(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: {what} not found; run the earlier stages first")
    return pd.read_parquet(path)


def _tracker_for(params: Params, layout: Layout) -> NullTracker:
    """The tracker of this pipeline run, resumed from ``tracking.json`` when present."""
    if params.tracking.uri is not None and layout.tracking.is_file():
        info = json.loads(layout.tracking.read_text())
        if info.get("run_id") and info.get("uri") == params.tracking.uri:
            tracker = make_tracker(params.tracking.uri, params.tracking.experiment)
            tracker.resume(info["run_id"])
            return tracker
    return NullTracker()


def _model_meta(layout: Layout) -> dict[str, Any]:
    """The saved synthesizer's own record (effective config, epochs run), or ``{}``."""
    from synthgen.synthesizers.base import META_FILE

    path = layout.model / META_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _images():
    """The stages of ``data.kind: image`` (:mod:`synthgen.images_pipeline`)."""
    from synthgen import images_pipeline

    return images_pipeline


# -- stages ------------------------------------------------------------------------------
def ingest_stage(params: Params) -> dict[str, Any]:
    """Read ``data.path``, infer and save the schema, write the train and holdout splits."""
    from synthgen.data.ingest import ingest

    if params.data.kind == "image":
        return _images().ingest_stage(params)
    layout = Layout(params.out)
    schema, train, holdout = ingest(params.data)
    write_parquet(layout.train, train)
    write_parquet(layout.holdout, holdout)
    schema.save(layout.schema)
    log.info("ingest: %d train rows, %d holdout rows, %d columns", len(train), len(holdout), len(schema.columns))
    return {"n_train": len(train), "n_holdout": len(holdout), "columns": len(schema.columns)}


def train_stage(params: Params) -> dict[str, Any]:
    """Fit ``model.name`` on the train split; save ``model/`` and ``losses.csv``."""
    from synthgen.reporting import plot_losses
    from synthgen.synthesizers import REGISTRY
    from synthgen.training.callbacks import History, ProgressLog

    if params.data.kind == "image":
        return _images().train_stage(params)
    if getattr(REGISTRY[params.model.name], "data_kind", "tabular") != "tabular":
        raise ConfigError(f"model.name: {params.model.name!r} models images; set data.kind: image")
    layout = Layout(params.out)
    schema = TableSchema.load(layout.schema)
    train = _read_parquet(layout.train, "train split")
    if params.privacy.epsilon is not None and not params.data.public_bounds:
        raise ConfigError(
            "data.public_bounds: false with privacy.epsilon set: category sets and ranges "
            "would have to be released privately, which synthgen does not do yet"
        )
    tracker = make_tracker(params.tracking.uri, params.tracking.experiment)
    if params.tracking.uri is not None:
        tracker.check()  # fail before training, not after
    synthesizer = REGISTRY[params.model.name](
        schema, params.model, params.privacy, max_categories=params.data.max_categories,
        checkpoint_dir=layout.checkpoints if params.model.checkpoint_every else None,
    )
    run_id = tracker.start(
        run_name=f"{params.model.name}-seed{params.model.seed}",
        tags={"synthgen.version": __version__, "synthgen.model": params.model.name,
              **({"mlflow.parentRunId": params.tracking.parent_run} if params.tracking.parent_run else {})},
    )
    write_json(layout.tracking, {"uri": params.tracking.uri, "run_id": run_id})
    tracker.log_artifact(layout.schema)
    history = History()

    def log_params() -> None:  # after fit: families settle some settings (epochs) on the data
        resolved = {f"model.{k}": v for k, v in synthesizer.config.model_dump().items()}
        tracker.log_params({**params.flat(), **resolved})

    try:
        synthesizer.fit(train, callbacks=[history, ProgressLog(), tracker.callback()])
    except BaseException:
        log_params()
        tracker.end("FAILED")
        raise
    log_params()
    synthesizer.save(layout.model)
    write_json(layout.model / "params.json", params.to_dict())
    losses = pd.DataFrame(history.rows)
    with_losses = not losses.empty
    write_text(layout.losses, losses.to_csv(index=False) if with_losses else "epoch\n")
    summary = {"train_seconds": synthesizer.train_seconds_, "epochs_run": len(history.rows), **synthesizer.extra_meta()}
    tracker.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float))})
    if with_losses:
        figure = plot_losses(losses, layout.root / "loss_curve.png")
        tracker.log_artifact(figure, "plots")
    tracker.log_artifact(layout.model)
    if params.tracking.registered_model and params.tracking.uri is None:
        log.info("train: tracking.uri is null, so the generator is not registered as %r", params.tracking.registered_model)
    elif params.tracking.registered_model:
        generator = tracker.log_generator(layout.model, params.tracking.registered_model, params.tracking.model_alias)
        write_json(layout.tracking, {"uri": params.tracking.uri, "run_id": run_id, "generator": generator})
        summary["generator"] = generator
    log.info("train: %s fitted in %.1fs", params.model.name, synthesizer.train_seconds_)
    return summary


def generate_stage(params: Params) -> dict[str, Any]:
    """Sample ``generate.rows`` rows from the saved model into ``synthetic.parquet``."""
    import synthgen

    if params.data.kind == "image":
        return _images().generate_stage(params)
    layout = Layout(params.out)
    filtered = params.validate_.privacy_filter is not None
    phases = Phases("generate", ["load", "sample", *(["privacy filter"] if filtered else []), "write", "track"])
    with phases("load"):
        model = synthgen.load(layout.model)
    rows = params.generate.rows or model.n_train_
    seed = params.generate.seed if params.generate.seed is not None else params.model.seed
    with phases("sample"):
        frame = model.sample(rows, conditions=params.generate.conditions or None, seed=seed)
    dropped = 0
    if filtered:
        from synthgen.validation.privacy import privacy_filter

        train = _read_parquet(layout.train, "train split")
        with phases("privacy filter"):
            frame, dropped = privacy_filter(frame, train, params.validate_.privacy_filter, model.schema)
        frame = frame.reset_index(drop=True)
        log.info("privacy filter: dropped %d of %d rows closer than %g to a training row",
                 dropped, rows, params.validate_.privacy_filter)
    with phases("write"):
        write_parquet(layout.synthetic, frame)
    tracker = _tracker_for(params, layout)
    generator = json.loads(layout.tracking.read_text()).get("generator") if layout.tracking.is_file() else None
    generation = {
        "kind": params.data.kind,
        "synthetic": layout.synthetic.name,
        "rows": len(frame),
        "columns": list(frame.columns),
        "schema": layout.schema.name,
        "model": params.model.name,
        "model_dir": layout.model.name,
        "model_hash": file_hash(layout.model),
        "seed": seed,
        "conditions": params.generate.conditions,
        "privacy_filter": {"threshold": params.validate_.privacy_filter, "dropped": dropped},
        "params_hash": run_params_hash(params.to_dict()),
        "source_data": str(params.data.path),
        "source_data_hash": source_hash(params.data.path),
        "synthetic_hash": file_hash(layout.synthetic),
        "mlflow_run_id": tracker.run_id,
        "tracking_uri": params.tracking.uri,
        "generator": generator,
        "train_seconds": model.train_seconds_,
        "privacy": {"epsilon": params.privacy.epsilon, **model.extra_meta()},
        "synthgen_version": __version__,
        "python": platform.python_version(),
    }
    write_json(layout.generation, generation)
    with phases("track"):
        tracker.log_artifact(layout.synthetic, "synthetic")
    log.info("generate: %d rows -> %s", len(frame), layout.synthetic)
    return generation


def validate_stage(params: Params, synthetic: str | Path | None = None, out: str | Path | None = None) -> dict[str, Any]:
    """Score synthetic data against the real train split; write the verdict.

    With ``synthetic=None`` the pipeline's own ``synthetic.parquet`` is scored and the
    run's ``validation.json`` and ``manifest.json`` are written. With a path (an audit
    of data from elsewhere) the verdict goes to ``out`` (default: beside that file).
    """
    from synthgen.reporting import build_report
    from synthgen.validation.verdict import validate_synthetic

    if params.data.kind == "image":
        return _images().validate_stage(params, synthetic, out)
    layout = Layout(params.out)
    schema = TableSchema.load(layout.schema)
    train = _read_parquet(layout.train, "train split")
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
        frame = _read_parquet(layout.synthetic, "synthetic data")
        if not layout.generation.is_file():
            raise ModelError(f"{layout.generation}: not found; run the generate stage first")
        generation = json.loads(layout.generation.read_text())
    extra: dict[str, float] = {}
    if not audit and generation.get("privacy", {}).get("epsilon_spent") is not None:
        extra["epsilon_spent"] = generation["privacy"]["epsilon_spent"]
    holdout = _read_parquet(layout.holdout, "holdout split") if layout.holdout.is_file() else None
    scoring = ["fidelity", "gx", "detection", "utility", "privacy"]
    phases = Phases("validate", scoring if audit else [*scoring, "report", "track"])
    report, gx_result = validate_synthetic(
        train, frame, schema, params.validate_, extra_metrics=extra, holdout=holdout,
        target=params.data.target, sensitive_columns=params.validate_.sensitive,
        docs_dir=None if audit else layout.data_docs, phases=phases,
    )
    if audit:
        target = Path(out) if out else Path(synthetic).with_suffix(".validation.json")
        write_json(target, report)
        return report
    write_json(layout.gx_result, gx_result)
    write_json(layout.validation, report)
    tracker = _tracker_for(params, layout)
    tracker.log_metrics(report["metrics"])  # before the report and datasheet, so a failure there keeps them
    manifest = generation
    manifest["validation"] = {
        "passed": report["passed"],
        "file": layout.validation.name,
        "failed_checks": [c["name"] for c in report["checks"] if not c["passed"]],
        **{k: report["metrics"][k] for k in ("quality_score",) if k in report["metrics"]},
        "key_metrics": {k: report["metrics"][k] for k in KEY_METRICS if k in report["metrics"]},
    }
    write_json(layout.manifest, manifest)
    write_text(layout.datasheet, render_datasheet(manifest, schema, _model_meta(layout), report))
    losses = pd.read_csv(layout.losses) if layout.losses.is_file() else None
    with phases("report"):
        write_text(layout.report, build_report(train, frame, schema, report, losses))
    if report["passed"]:
        publish(layout)
    with phases("track"):
        for artifact in (layout.validation, layout.gx_result, layout.manifest, layout.datasheet, layout.report):
            tracker.log_artifact(artifact)
    tracker.set_tags({"synthgen.verdict": "passed" if report["passed"] else "rejected"})
    registered = manifest.get("generator") or {}
    if report["passed"] and registered.get("version") and params.tracking.champion_alias:
        tracker.set_model_alias(registered["registered_model"], registered["version"], params.tracking.champion_alias)
    tracker.end("FINISHED")
    log.info("validate: %s (quality_score=%.3f)", "passed" if report["passed"] else "FAILED",
             report["metrics"].get("quality_score") or float("nan"))
    return report


def publish(layout: Layout) -> Path:
    """Copy the synthetic data, manifest, datasheet and report to ``published/`` (replaced atomically).

    Called only for a passing verdict; a rejected run leaves the last passing
    publication in place and is tagged ``synthgen.verdict=rejected`` in MLflow.
    """
    import shutil

    with atomic_path(layout.published) as tmp:
        tmp.mkdir()
        for source in (layout.synthetic, layout.manifest, layout.datasheet, layout.report):
            shutil.copy2(source, tmp / source.name)
    log.info("published -> %s", layout.published)
    return layout.published


def run_pipeline(params: Params) -> dict[str, Any]:
    """All four stages in order; returns the validation report."""
    ingest_stage(params)
    train_stage(params)
    generate_stage(params)
    return validate_stage(params)
