"""The pipeline stages for ``data.kind: image``: ingest -> train -> generate -> validate.

:mod:`synthgen.pipeline` dispatches here on ``data.kind``, so the CLI, the DVC stages
and the Prefect flow run images through the same commands as tables. Outputs under
``output.dir`` (:class:`ImageLayout`):

| file | stage | what |
| --- | --- | --- |
| ``schema.json`` | ingest | kind image, size, channels, classes, per-split class counts |
| ``data/train.npz``, ``data/holdout.npz`` | ingest | the stratified split (uint8 N x H x W x C, labels, classes) |
| ``model/`` | train | the fitted ``image_cgan``: ``synthgen.load("<dir>/model")`` |
| ``losses.csv``, ``loss_curve.png`` | train | per-epoch losses, ``ada_p``, ``ada_rt`` |
| ``ada.csv`` | train | ``step, ada_p, ada_rt`` at every ADA adjustment (``augment: ada``) |
| ``samples/epoch-<n>.png`` | train | sample grids (one row per class), also logged to MLflow |
| ``tracking.json`` | train | the MLflow run of this pipeline run |
| ``synthetic/<class>/00001.png``, ``synthetic/labels.csv`` | generate | the synthetic ImageFolder |
| ``synthetic_grid.png`` | generate | a grid of the synthetic images |
| ``generation.json`` | generate | images, seed, conditions, hashes, run id |
| ``validation.json`` | validate | ``{"passed", "metrics", "checks", "details"}`` |
| ``manifest.json``, ``report.html`` | validate | the record a consumer reads; the trust report |
| ``DATASHEET.md`` | validate | source, classes, model, verdict and key figures, intended use, limits |
| ``published/`` | validate | ``synthetic/``, manifest, report and datasheet - only when the verdict passed |

Metrics come from :func:`synthgen.validation.images.image_report` (domain FID/KID,
generated-class accuracy, TSTR, precision/recall/density/coverage, memorization) and
are checked against ``validate.min`` / ``validate.max``. When params leave those two
unset, the image defaults :data:`IMAGE_MIN` / :data:`IMAGE_MAX` apply (the tabular
defaults name tabular metrics).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthgen import __version__
from synthgen.config import Params, ValidateConfig
from synthgen.datasheet import IMAGE_KEY_METRICS, render_image_datasheet
from synthgen.data.images import (
    ImageSchema, ingest_images, load_images, read_image_folder, save_images, write_image_folder,
)
from synthgen.errors import ConfigError
from synthgen.io import atomic_path, file_hash, run_params_hash, source_hash, write_json, write_text
from synthgen.pipeline import Layout, _model_meta, _tracker_for
from synthgen.tracking import make_tracker

log = logging.getLogger(__name__)

IMAGE_MODEL = "image_cgan"
IMAGE_MIN: dict[str, float] = {}  # default floors for images (params' validate.min unset)
IMAGE_MAX: dict[str, float] = {"exact_copy_rate": 0.05}  # default ceilings (validate.max unset)


@dataclass(frozen=True)
class ImageLayout(Layout):
    """:class:`~synthgen.pipeline.Layout` plus the image artifacts."""

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


def _check_model(params: Params) -> None:
    if params.model.name != IMAGE_MODEL:
        raise ConfigError(f"model.name: {params.model.name!r} models tables; data.kind: image needs {IMAGE_MODEL!r}")


def _thresholds(cfg: ValidateConfig) -> ValidateConfig:
    update = {}
    if "min" not in cfg.model_fields_set:
        update["min"] = dict(IMAGE_MIN)
    if "max" not in cfg.model_fields_set:
        update["max"] = dict(IMAGE_MAX)
    return cfg.model_copy(update=update) if update else cfg


# -- stages ----------------------------------------------------------------------------------------
def ingest_stage(params: Params) -> dict[str, Any]:
    """Read ``data.path``, resize/convert, split; write the splits and ``schema.json``."""
    layout = ImageLayout(params.out)
    schema, train, holdout = ingest_images(params.data)
    save_images(layout.train_images, train)
    save_images(layout.holdout_images, holdout)
    schema.save(layout.schema)
    log.info("ingest: %d train and %d holdout images, %d classes, %dx%dx%d", len(train), len(holdout),
             len(schema.classes), schema.image_size, schema.image_size, schema.channels)
    return {"n_train": len(train), "n_holdout": len(holdout), "classes": len(schema.classes)}


def train_stage(params: Params) -> dict[str, Any]:
    """Fit ``image_cgan`` on the train split; save ``model/``, ``losses.csv`` and sample grids."""
    from synthgen.reporting import plot_losses
    from synthgen.synthesizers.image_cgan import AdaIntervalLog, ImageCGANSynthesizer, SampleGrid
    from synthgen.training.callbacks import History, ProgressLog

    _check_model(params)
    layout = ImageLayout(params.out)
    ImageSchema.load(layout.schema)
    train = load_images(layout.train_images, "train split")
    if params.privacy.epsilon is not None:
        raise ConfigError("privacy.epsilon: image_cgan has no differential privacy; set privacy.epsilon: null")
    tracker = make_tracker(params.tracking.uri, params.tracking.experiment)
    if params.tracking.uri is not None:
        tracker.check()
    synthesizer = ImageCGANSynthesizer(
        params.model, checkpoint_dir=layout.checkpoints if params.model.checkpoint_every else None)
    run_id = tracker.start(run_name=f"{IMAGE_MODEL}-seed{params.model.seed}",
                           tags={"synthgen.version": __version__, "synthgen.model": IMAGE_MODEL,
                                 "synthgen.data_kind": "image"})
    write_json(layout.tracking, {"uri": params.tracking.uri, "run_id": run_id})
    tracker.log_params(params.flat())
    tracker.log_artifact(layout.schema)
    history = History()
    epochs = synthesizer.config.epochs
    grids = SampleGrid(layout.samples, epochs, params.model.sample_every, tracker.log_artifact)
    ada = AdaIntervalLog(tracker.log_metrics)
    try:
        synthesizer.fit(train, callbacks=[history, ProgressLog(epochs), tracker.callback(), grids, ada])
    except BaseException:
        tracker.end("FAILED")
        raise
    synthesizer.save(layout.model)
    write_json(layout.model / "params.json", params.to_dict())
    losses = pd.DataFrame(history.rows)
    write_text(layout.losses, losses.to_csv(index=False) if not losses.empty else "epoch\n")
    summary = {"train_seconds": synthesizer.train_seconds_, "epochs_run": len(history.rows),
               **synthesizer.extra_meta()}
    tracker.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float))})
    if not losses.empty:
        tracker.log_artifact(plot_losses(losses, layout.root / "loss_curve.png"), "plots")
    if ada.rows:
        write_text(layout.root / "ada.csv", pd.DataFrame(ada.rows).to_csv(index=False))
        tracker.log_artifact(layout.root / "ada.csv")
    else:  # no ADA this run: no stale trace from an earlier one
        (layout.root / "ada.csv").unlink(missing_ok=True)
    tracker.log_artifact(layout.model)
    log.info("train: image_cgan fitted in %.1fs (ADA p=%.3f)", synthesizer.train_seconds_,
             summary.get("ada_p_final", float("nan")))
    return summary


def generate_stage(params: Params) -> dict[str, Any]:
    """Sample ``generate.rows`` images (default: as many as the train split) into ``synthetic/``."""
    import synthgen
    from synthgen.validation.images import sample_grid

    layout = ImageLayout(params.out)
    model = synthgen.load(layout.model)
    if getattr(model, "name", None) != IMAGE_MODEL:
        raise ConfigError(f"{layout.model}: holds a {model.name!r} model, not {IMAGE_MODEL!r}; rerun train")
    rows = params.generate.rows or model.n_train_
    seed = params.generate.seed if params.generate.seed is not None else params.model.seed
    images, labels = model.sample(rows, conditions=params.generate.conditions or None, seed=seed)
    write_image_folder(layout.synthetic_dir, images, labels, model.classes_)
    sample_grid(images, labels, layout.synthetic_grid)
    tracker = _tracker_for(params, layout)
    generation = {
        "kind": "image",
        "rows": len(images),
        "image_shape": list(images.shape[1:]),
        "classes": model.classes_,
        "counts": {name: int(n) for name, n in zip(model.classes_, np.bincount(labels, minlength=len(model.classes_)))},
        "synthetic": layout.synthetic_dir.name,
        "files": f"{layout.synthetic_dir.name}/labels.csv",
        "schema": layout.schema.name,
        "model": IMAGE_MODEL,
        "model_dir": layout.model.name,
        "model_hash": file_hash(layout.model),
        "seed": seed,
        "conditions": params.generate.conditions,
        "params_hash": run_params_hash(params.to_dict()),
        "source_data": str(params.data.path),
        "source_data_hash": source_hash(params.data.path),
        "synthetic_hash": file_hash(layout.synthetic_dir),
        "mlflow_run_id": tracker.run_id,
        "tracking_uri": params.tracking.uri,
        "train_seconds": model.train_seconds_,
        "augment": {"mode": model.config.augment, "ada_p": model.meta_extra_.get("ada_p_final")},
        "synthgen_version": __version__,
        "python": platform.python_version(),
    }
    write_json(layout.generation, generation)
    tracker.log_artifact(layout.synthetic_dir / "labels.csv", "synthetic")
    tracker.log_artifact(layout.synthetic_grid, "synthetic")
    log.info("generate: %d images -> %s", len(images), layout.synthetic_dir)
    return generation


def validate_stage(params: Params, synthetic: str | Path | None = None, out: str | Path | None = None) -> dict[str, Any]:
    """Score the synthetic images against the train split and the untouched holdout.

    With ``synthetic=None`` the pipeline's own ``synthetic/`` is scored and the run's
    ``validation.json``, ``manifest.json`` and ``report.html`` are written (and
    ``published/`` on a pass). With a path - a folder with ``labels.csv`` in the layout
    the generate stage writes - the verdict goes to ``out`` (default
    ``<folder>.validation.json``).
    """
    from synthgen.validation.images import image_report, sample_grid
    from synthgen.validation.verdict import evaluate

    layout = ImageLayout(params.out)
    schema = ImageSchema.load(layout.schema)
    train = load_images(layout.train_images, "train split")
    holdout = load_images(layout.holdout_images, "holdout split")
    audit = synthetic is not None
    folder = Path(synthetic) if audit else layout.synthetic_dir
    if not audit and not layout.generation.is_file():
        from synthgen.errors import ModelError

        raise ModelError(f"{layout.generation}: not found; run the generate stage first")
    generated = read_image_folder(folder, schema.classes, schema.channels)
    labelled = schema.conditional
    scored = image_report(
        train.images, train.labels if labelled else None, holdout.images, holdout.labels if labelled else None,
        generated.images, generated.labels if labelled else None, seed=params.model.seed,
        device=params.model.device,
    )
    verdict = evaluate(scored["metrics"], _thresholds(params.validate_))
    report = {**verdict, "details": scored["details"]}
    if audit:
        target = Path(out) if out else folder.with_name(folder.name + ".validation.json")
        write_json(target, report)
        return report
    write_json(layout.validation, report)
    tracker = _tracker_for(params, layout)
    tracker.log_metrics(report["metrics"])
    tracker.log_artifact(layout.validation)
    manifest = json.loads(layout.generation.read_text())
    manifest["validation"] = {
        "passed": report["passed"], "file": layout.validation.name,
        "failed_checks": [c["name"] for c in report["checks"] if not c["passed"]],
        **{k: report["metrics"].get(k) for k in ("generated_class_accuracy", "fid_domain")},
        "key_metrics": {k: report["metrics"].get(k) for k in IMAGE_KEY_METRICS},
    }
    write_json(layout.manifest, manifest)
    write_text(layout.datasheet, render_image_datasheet(manifest, schema, _model_meta(layout), report))
    grid = sample_grid(generated.images, generated.labels)
    real_grid = sample_grid(train.images, train.labels)
    losses = pd.read_csv(layout.losses) if layout.losses.is_file() else None
    write_text(layout.report, build_image_report(report, grid, real_grid, losses, manifest))
    if report["passed"]:
        publish(layout)
    for artifact in (layout.manifest, layout.report, layout.datasheet):
        tracker.log_artifact(artifact)
    tracker.set_tags({"synthgen.verdict": "passed" if report["passed"] else "rejected"})
    tracker.end("FINISHED")
    log.info("validate: %s (generated_class_accuracy=%s, fid_domain=%s)",
             "passed" if report["passed"] else "FAILED", report["metrics"].get("generated_class_accuracy"),
             report["metrics"].get("fid_domain"))
    return report


def publish(layout: ImageLayout) -> Path:
    """Copy ``synthetic/``, the manifest, the report and the datasheet to ``published/`` (replaced atomically)."""
    with atomic_path(layout.published) as tmp:
        tmp.mkdir()
        shutil.copytree(layout.synthetic_dir, tmp / layout.synthetic_dir.name)
        for source in (layout.manifest, layout.report, layout.datasheet):
            shutil.copy2(source, tmp / source.name)
    log.info("published -> %s", layout.published)
    return layout.published


def run_pipeline(params: Params) -> dict[str, Any]:
    """All four stages in order; returns the validation report."""
    ingest_stage(params)
    train_stage(params)
    generate_stage(params)
    return validate_stage(params)


# -- report -------------------------------------------------------------------------------------------
def build_image_report(report: dict[str, Any], grid_png: bytes, real_png: bytes,
                       losses: pd.DataFrame | None, manifest: dict[str, Any]) -> str:
    """A self-contained HTML trust report: verdict, checks, metrics, sample grids, losses."""
    from synthgen.validation.images import image_report_html_section

    def img(data: bytes, alt: str) -> str:
        return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'

    checks = "".join(
        f"<tr><td>{html.escape(c['name'])}</td><td>{c['kind']}</td><td>{c['threshold']:.4g}</td>"
        f"<td>{'–' if c['value'] is None else format(c['value'], '.4g')}</td>"
        f"<td>{'pass' if c['passed'] else 'FAIL'}</td></tr>" for c in report["checks"])
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>synthgen image report</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td,th{padding:2px 8px;"
        "border-bottom:1px solid #ddd;text-align:left}img{image-rendering:pixelated;margin:4px}</style></head><body>",
        f"<h1>Synthetic images: {'PASSED' if report['passed'] else 'REJECTED'}</h1>",
        f"<p>{manifest.get('rows')} images of {html.escape(str(manifest.get('image_shape')))} from "
        f"{html.escape(str(manifest.get('model')))} (augment {html.escape(str(manifest.get('augment')))}); "
        f"seed {manifest.get('seed')}.</p>",
        "<h2>Checks</h2><table><tr><th>metric</th><th>kind</th><th>threshold</th><th>value</th><th></th></tr>",
        checks or "<tr><td colspan=5>no thresholds set</td></tr>", "</table>",
        image_report_html_section(report, grid_png),
        "<h2>Real train images</h2>", img(real_png, "real grid"),
    ]
    if losses is not None and not losses.empty:
        import io

        from synthgen.reporting import _loss_figure, _pyplot

        fig = _loss_figure(losses)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        _pyplot().close(fig)
        parts += ["<h2>Training</h2>", img(buf.getvalue(), "losses")]
        if "ada_p" in losses:
            last = losses.iloc[-1]
            parts.append(f"<p>ADA at the last epoch: p = {last['ada_p']:.3f}, r_t = {last.get('ada_rt', float('nan')):.3f}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
