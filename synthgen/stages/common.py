"""What every modality's stages share: the artifact layout, the MLflow run of a pipeline,
the train stage's tracking, provenance, the verdict, ``published/`` and the champion alias.

A stage is a function of the validated :class:`~synthgen.config.Params` that reads its
inputs from and writes its outputs to ``output.dir`` (see :class:`Layout`). The table and
image stages (:mod:`synthgen.stages.tabular`, :mod:`synthgen.stages.images`) differ in what
they read, fit and score; everything else is written once, here.

One MLflow run spans a pipeline run: the train stage creates it and records its id in
``tracking.json``; generate, validate and augment log into the same run.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from synthgen.config import Params
from synthgen.data.sources import source_hash
from synthgen.errors import DataError, ModelError
from synthgen.io import atomic_path, data_digest, digest_matches, file_hash, run_params_hash, write_json, write_text
from synthgen.reports.figures import plot_losses
from synthgen.stages.lineage import datasets, registry_name
from synthgen.synthesizers.base import META_FILE, Synthesizer
from synthgen.tracking import NullTracker, make_tracker
from synthgen.training.callbacks import Callback, History, ProgressLog
from synthgen.training.distributed import current as process_group
from synthgen.version import __version__

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    """Where each artifact lives under ``output.dir`` (tables; images add theirs)."""

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
        """The full trust report, for the data owner: it shows real rows (images); never published."""
        return self.root / "report.html"

    @property
    def public_report(self) -> Path:
        """The public trust report, built from no real row; published as ``published/report.html``."""
        return self.root / "report_public.html"

    @property
    def datasheet(self) -> Path:
        return self.root / "DATASHEET.md"

    @property
    def published(self) -> Path:
        """The consumer-facing copy: only data whose verdict passed ever lands here."""
        return self.root / "published"


@dataclass(frozen=True)
class ImageLayout(Layout):
    """:class:`Layout` plus the image artifacts."""

    @property
    def train_images(self) -> Path:
        return self.root / "data" / "train.npz"

    @property
    def holdout_images(self) -> Path:
        return self.root / "data" / "holdout.npz"

    @property
    def synthetic_dir(self) -> Path:
        return self.root / "synthetic"

    @property
    def synthetic_grid(self) -> Path:
        return self.root / "synthetic_grid.png"

    @property
    def samples(self) -> Path:
        return self.root / "samples"


def read_parquet(path: Path, what: str) -> pd.DataFrame:
    """A split or table the earlier stages wrote; a clear error when it is not there yet."""
    if not path.is_file():
        raise DataError(f"{path}: {what} not found; run the earlier stages first")
    return pd.read_parquet(path)


def resume_tracker(params: Params, layout: Layout) -> NullTracker:
    """The tracker of this pipeline run, resumed from ``tracking.json`` when present."""
    if params.tracking.uri is not None and layout.tracking.is_file():
        info = json.loads(layout.tracking.read_text())
        if info.get("run_id") and info.get("uri") == params.tracking.uri:
            tracker = make_tracker(params.tracking.uri, params.tracking.experiment)
            tracker.resume(info["run_id"])
            return tracker
    return NullTracker()


def model_meta(layout: Layout) -> dict[str, Any]:
    """The saved synthesizer's own record (effective config, epochs run), or ``{}``."""
    path = layout.model / META_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def registered_generator(layout: Layout) -> dict[str, Any] | None:
    """The registry entry recorded in ``tracking.json``, if any: only output directories
    written before registration moved to the validate stage have one (it is now in
    ``manifest.json``, see :func:`register_with_verdict`)."""
    return json.loads(layout.tracking.read_text()).get("generator") if layout.tracking.is_file() else None


# -- train -----------------------------------------------------------------------------------------
def train_and_track(
    params: Params,
    layout: Layout,
    synthesizer: Synthesizer,
    data: Any,
    callbacks_for: Callable[[NullTracker], Sequence[Callback]] = lambda tracker: (),
) -> tuple[dict[str, Any], NullTracker]:
    """Fit ``synthesizer`` on ``data`` inside a new MLflow run and save what a train stage saves.

    The run is tagged with the synthgen version, the model and the data kind; its params are
    the resolved ones (the family's defaults for what params leave unset), logged after the
    fit settled them, also when the fit fails. Writes ``model/`` (with ``params.json``),
    ``losses.csv``, ``loss_curve.png`` and ``tracking.json`` (the run id; the generator is
    logged and registered later, by the validate stage, with its verdict, and recorded in
    ``manifest.json``: see :func:`register_with_verdict`). ``callbacks_for(tracker)`` adds
    a modality's own callbacks (sample grids, the ADA trace).

    A run recorded in ``tracking.json`` that is still RUNNING belongs to a killed attempt:
    it is ended as KILLED before the new run starts. A fit resumed from a checkpoint
    (``model.checkpoint_every``) still writes every epoch once to ``losses.csv`` and MLflow.
    Once the run has started, an outage of the MLflow store is never fatal: calls are
    retried (:meth:`~synthgen.tracking.MlflowTracker.tolerant`), and a run that stays
    incomplete is tagged ``synthgen.tracking=incomplete`` and recorded so in
    ``tracking.json`` (``"tracking": "incomplete"``). Under torchrun the ranks other than 0
    only train (no tracker, no callbacks, no file) and get a :class:`NullTracker`.

    Returns:
        The summary (train seconds, epochs run, family facts) and the tracker (still open,
        for the modality's own artifacts).
    """
    if not process_group().is_main:  # torchrun: gradients are averaged with rank 0, which writes
        synthesizer.fit(data)
        return {"train_seconds": synthesizer.train_seconds_, **synthesizer.extra_meta()}, NullTracker()
    tracker = make_tracker(params.tracking.uri, params.tracking.experiment)
    if params.tracking.uri is not None:
        tracker.check()  # fail before training, not after
        earlier = json.loads(layout.tracking.read_text()) if layout.tracking.is_file() else {}
        if earlier.get("uri") == params.tracking.uri:
            tracker.end_stale(earlier.get("run_id"), "KILLED")
    tags = {"synthgen.version": __version__, "synthgen.model": synthesizer.name,
            "synthgen.data_kind": params.data.kind}
    if params.tracking.parent_run:
        tags["mlflow.parentRunId"] = params.tracking.parent_run
    run_id = tracker.start(run_name=f"{synthesizer.name}-seed{params.model.seed}", tags=tags)
    write_json(layout.tracking, {"uri": params.tracking.uri, "run_id": run_id})
    history = History()

    def log_params() -> None:  # after fit: families settle some settings (epochs) on the data
        resolved = {f"model.{k}": v for k, v in synthesizer.config.model_dump().items()}  # this family's only
        others = {k: v for k, v in params.flat().items() if not k.startswith("model.")}
        tracker.log_params({**others, **resolved})

    with tracker.tolerant():  # from here an outage of the store is logged and retried, never fatal
        tracker.log_artifact(layout.schema)
        try:
            synthesizer.fit(data, callbacks=[history, ProgressLog(), tracker.callback(), *callbacks_for(tracker)])
        except BaseException:
            log_params()
            tracker.end("FAILED")
            raise
        log_params()
        synthesizer.save(layout.model)
        write_json(layout.model / "params.json", params.to_dict())
        losses = pd.DataFrame(history.rows)
        write_text(layout.losses, losses.to_csv(index=False) if not losses.empty else "epoch\n")
        summary = {"train_seconds": synthesizer.train_seconds_, "epochs_run": len(history.rows),
                   **synthesizer.extra_meta()}
        tracker.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float))})
        if not losses.empty:
            tracker.log_artifact(plot_losses(losses, layout.root / "loss_curve.png"), "plots")
        tracker.log_artifact(layout.model)
    if tracker.incomplete:
        write_json(layout.tracking, {"uri": params.tracking.uri, "run_id": run_id, "tracking": "incomplete"})
    if registry_name(params) and params.tracking.uri is None:
        log.info("train: tracking.uri is null, so the generator is not registered as %r", registry_name(params))
    log.info("train: %s fitted in %.1fs", synthesizer.name, synthesizer.train_seconds_)
    return summary, tracker


# -- generate --------------------------------------------------------------------------------------
def provenance(params: Params, layout: Layout, model: Synthesizer, synthetic: Path, seed: int,
               tracker: NullTracker) -> dict[str, Any]:
    """The generation record both modalities write into ``generation.json`` (and so the
    manifest): model and its hash, seed, conditions, params and source hashes, the
    synthetic data's hash, the MLflow run and registry entry, versions."""
    return {
        "schema": layout.schema.name,
        "model": model.name,
        "model_dir": layout.model.name,
        "model_hash": file_hash(layout.model),
        "seed": seed,
        "conditions": params.generate.conditions,
        **source_fields(params),
        "splits": split_records(layout),
        "synthetic_hash": data_digest(synthetic),
        "mlflow_run_id": tracker.run_id,
        "tracking_uri": params.tracking.uri,
        "generator": registered_generator(layout),
        "train_seconds": model.train_seconds_,
        "synthgen_version": __version__,
        "python": platform.python_version(),
    }


def split_records(layout: Layout) -> dict[str, dict[str, Any]]:
    """The train and holdout splits the run used: ``{"train": {"path", "sha256", "rows"}, "holdout": ...}``
    (``sha256``: the split's :func:`~synthgen.io.data_digest`)."""
    import pyarrow.parquet as pq

    images = isinstance(layout, ImageLayout)
    schema = json.loads(layout.schema.read_text()) if images and layout.schema.is_file() else {}
    found = {}
    for key, path in zip(("train", "holdout"), (layout.train_images, layout.holdout_images) if images
                         else (layout.train, layout.holdout)):
        if path.is_file():
            rows = schema.get(f"n_{key}") if images else pq.ParquetFile(path).metadata.num_rows
            found[key] = {"path": str(path), "sha256": data_digest(path), "rows": rows}
    return found


def source_fields(params: Params) -> dict[str, Any]:
    """Params hash and the source data with its hash (generation and augment manifests)."""
    return {
        "params_hash": run_params_hash(params.to_dict()),
        "source_data": str(params.data.path),
        "source_data_hash": source_hash(params.data.path),
    }


def load_generation(layout: Layout, data: Path) -> dict[str, Any]:
    """The generate stage's record, checked against the files it names: the synthetic data
    ``data`` and ``model/`` must hash as recorded, so data of an interrupted or later
    generate (or a retrained model) is never judged or published under this record.

    Raises:
        ModelError: no record (run generate), or the files on disk differ from it.
    """
    if not layout.generation.is_file():
        raise ModelError(f"{layout.generation}: not found; run the generate stage first")
    generation = json.loads(layout.generation.read_text())
    for path, key in ((data, "synthetic_hash"), (layout.model, "model_hash")):
        if not path.exists() or not digest_matches(generation.get(key), file_hash(path)):
            raise ModelError(f"{path}: does not match the {key} recorded in {layout.generation.name} "
                             "(changed or interrupted since generate); rerun the generate stage")
    return generation


def begin_stage(*records: Path) -> None:
    """Start a stage by removing the records that commit its outputs (written last, by
    the stage itself): until the stage completes, the next one sees it as not run
    instead of trusting a record of earlier outputs."""
    for record in records:
        record.unlink(missing_ok=True)


# -- validate --------------------------------------------------------------------------------------
def record_verdict(params: Params, layout: Layout, report: dict[str, Any], generation: dict[str, Any],
                   headline: Sequence[str], key_metrics: Sequence[str]) -> tuple[dict[str, Any], NullTracker]:
    """Write ``validation.json`` and ``manifest.json`` (the generation record plus the verdict
    and the registry entry of :func:`register_with_verdict`, which registers the generator
    with this verdict); log the metrics to the pipeline's run. Returns the manifest and the
    run's tracker."""
    write_json(layout.validation, report)
    tracker = resume_tracker(params, layout)
    tracker.log_metrics(report["metrics"])  # before the report and datasheet, so a failure there keeps them
    metrics = report["metrics"]
    manifest = dict(generation)
    manifest["validation"] = {
        "passed": report["passed"],
        "file": layout.validation.name,
        "failed_checks": [c["name"] for c in report["checks"] if not c["passed"]],
        **{k: metrics.get(k) for k in headline if k in metrics},
        "key_metrics": {k: metrics[k] for k in key_metrics if k in metrics},
    }
    manifest["generator"] = register_with_verdict(params, layout, tracker, manifest)  # before the datasheet names it
    write_json(layout.manifest, manifest)
    return manifest, tracker


def register_with_verdict(params: Params, layout: Layout, tracker: NullTracker,
                          manifest: dict[str, Any]) -> dict[str, Any] | None:
    """Log and register the generator now that its verdict exists (validate stage).

    With ``tracking.registered_model`` set and tracking on, the model in ``model/`` is
    logged as a pyfunc of the pipeline's run with a ``verdict.json`` inside, and registered
    as a new version tagged ``synthgen.verdict`` = passed / rejected (and
    ``synthgen.failed_checks``), with alias ``tracking.model_alias`` (:func:`conclude`
    moves ``tracking.champion_alias`` on a pass). The caller records the entry in
    ``manifest.json`` (``"generator"``), not in ``tracking.json``: that file is the train
    stage's DVC output, and rewriting it here would make ``dvc repro`` retrain. Nothing is
    registered when the model on disk is not the one whose data was validated (retrained
    since generate).

    Returns:
        The registry entry (``model_id``, ``model_uri``, ``registered_model``,
        ``version``, ``alias``, ``verdict``), or ``None`` when nothing was registered.
    """
    from synthgen.tracking.gate import verdict_record

    name = registry_name(params)
    if not name or params.tracking.uri is None or tracker.run_id is None:
        if name:
            log.info("validate: no MLflow run to log into, so the generator is not registered as %r", name)
        return None
    if manifest.get("model_hash") != file_hash(layout.model):
        log.warning("validate: %s changed after its data was generated; not registering it as %r "
                    "(rerun generate and validate)", layout.model, name)
        return None
    return tracker.log_generator(layout.model, name, params.tracking.model_alias, verdict_record(manifest))


def conclude(params: Params, layout: Layout, tracker: NullTracker, report: dict[str, Any],
             manifest: dict[str, Any], data: Path, artifacts: Sequence[Path],
             synthetic: Sequence[Path] = ()) -> None:
    """Publish a passing run, log its artifacts and verdict tags, then the synthetic data
    (``synthetic``, under ``synthetic/``: only once the run carries its verdict), move the
    champion alias to its registered generator (registered with its verdict by
    :func:`register_with_verdict`) when it passed, and end the run."""
    from synthgen.tracking.gate import verdict_tags

    if report["passed"]:
        publish(layout, data)
    for artifact in artifacts:
        tracker.log_artifact(artifact)
    tracker.set_tags(verdict_tags({"passed": report["passed"],
                                   "failed_checks": (manifest.get("validation") or {}).get("failed_checks")}))
    for path in synthetic:
        tracker.log_artifact(path, "synthetic")
    tracker.log_datasets(datasets(params, manifest, layout.schema, data))  # lineage: source, splits, output
    registered = manifest.get("generator") or {}
    if report["passed"] and registered.get("version") and params.tracking.champion_alias:
        tracker.set_model_alias(registered["registered_model"], registered["version"], params.tracking.champion_alias)
    tracker.end("FINISHED")


def publish(layout: Layout, data: Path) -> Path:
    """Copy the synthetic data (a file or a folder), the manifest, the datasheet and the
    public report (:attr:`Layout.public_report`, as ``report.html``) to ``published/``,
    replaced atomically. Nothing else goes there: the full report shows real rows
    (images) and stays in the run directory.

    Called only for a passing verdict; a rejected run leaves the last passing
    publication in place and is tagged ``synthgen.verdict=rejected`` in MLflow.

    Raises:
        DataError: the public report was not written (run the validate stage).
    """
    if not layout.public_report.is_file():
        raise DataError(f"{layout.public_report}: public report not found; run the validate stage")
    expected = json.loads(layout.manifest.read_text()).get("synthetic_hash")
    with atomic_path(layout.published) as tmp:
        tmp.mkdir()
        if data.is_dir():
            shutil.copytree(data, tmp / data.name)
        else:
            shutil.copy2(data, tmp / data.name)
        for source in (layout.manifest, layout.datasheet):
            shutil.copy2(source, tmp / source.name)
        shutil.copy2(layout.public_report, tmp / layout.report.name)
        if not digest_matches(expected, file_hash(tmp / data.name)):  # the copy is what the manifest describes
            raise DataError(f"{data}: changed while it was published; rerun the generate and validate stages")
    log.info("published -> %s", layout.published)
    return layout.published
