"""The stages of ``data.kind: image``: ingest -> train -> generate -> validate.

:mod:`synthgen.stages` dispatches here on ``data.kind``, so the CLI, the DVC stages
and the Prefect flow run images through the same commands as tables; what both
modalities share is in :mod:`synthgen.stages.common`. Outputs under
``output.dir`` (:class:`~synthgen.stages.common.ImageLayout`):

| file | stage | what |
| --- | --- | --- |
| ``schema.json`` | ingest | kind image, size, channels, classes, per-split class counts |
| ``data/train.npz``, ``data/holdout.npz`` | ingest | the stratified split (uint8 N x H x W x C, labels, classes) |
| ``model/`` | train | the fitted ``image_cgan``: ``synthgen.load("<dir>/model")`` |
| ``losses.csv``, ``loss_curve.png`` | train | per-epoch losses, ``ada_p``, ``ada_rt`` |
| ``ada.csv`` | train | ``step, ada_p, ada_rt`` at every ADA adjustment (``disc_augment: ada``) |
| ``samples/epoch-<n>.png`` | train | sample grids (one row per class), also logged to MLflow |
| ``tracking.json`` | train | the MLflow run of this pipeline run |
| ``synthetic/<class>/00001.png``, ``synthetic/labels.csv`` | generate | the synthetic ImageFolder |
| ``synthetic_grid.png`` | generate | a grid of the synthetic images |
| ``generation.json`` | generate | images, seed, conditions, hashes, run id |
| ``validation.json`` | validate | ``{"passed", "metrics", "checks", "details"}`` |
| ``manifest.json``, ``report.html`` | validate | the record a consumer reads; the full trust report (shows real images) |
| ``report_public.html`` | validate | the public trust report: no real image (published as ``report.html``) |
| ``DATASHEET.md`` | validate | source, classes, model, verdict and key figures, intended use, limits |
| ``published/`` | validate | ``synthetic/``, manifest, public report and datasheet - only when the verdict passed |

Metrics come from :func:`synthgen.validation.images.image_report` (the detection test
against the real holdout, FID/KID/precision/recall in random-CNN, pixel/HOG and judge
features beside the holdout's own values, metric failures, generated-class accuracy,
TSTR, memorization) and are checked against ``validate.min`` / ``validate.max`` merged
over the image defaults :data:`IMAGE_MIN` / :data:`IMAGE_MAX` (a metric params set replaces
its default; the others stay): ``image_detection_auc`` ≤ 0.8,
``exact_copy_rate`` ≤ 0.05, ``memorization_share`` ≤ 0.1. The full report shows the
generated grid, a real holdout grid and nearest-train-neighbour pairs; the public one
shows no real image.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthgen.config import Params, ValidateConfig
from synthgen.data.images import (
    ImageSchema, ingest_images, load_images, read_image_folder, save_images, write_image_folder,
)
from synthgen.errors import ConfigError
from synthgen.io import write_json, write_text
from synthgen.reports.datasheet import IMAGE_KEY_METRICS, render_image_datasheet
from synthgen.data.images import sample_grid
from synthgen.stages.common import (
    ImageLayout, begin_stage, conclude, load_generation, model_meta, provenance, record_verdict, resume_tracker,
    train_and_track,
)
from synthgen.synthesizers import REGISTRY, load
from synthgen.training.distributed import current as process_group

log = logging.getLogger(__name__)

IMAGE_MODEL = "image_cgan"
IMAGE_MIN: dict[str, float] = {}  # default floors for images (params' validate.min unset)
#: Default ceilings (validate.max unset).
#: image_detection_auc 0.8, from image_detection (seed 0-7) on the bundled digits and the bench sets:
#:   real holdout vs real images it never saw: 0.50-0.57 (digits 32 px, 100/side; 8 px, 360/side),
#:   0.50-0.55 at 40/side; the real train split offered as generated, vs the holdout: 0.50 (digits),
#:   0.52-0.68 and 0.50-0.64 (bench photos32 and shapes32, 40 and 60/side: small sets are noisy);
#:   uniform noise and per-class checkerboard/stripe textures: 1.00; the image_cgan runs of issue 18
#:   (bench digits32, photos32, shapes32 at 32 px, 2 seeds each): 0.991-1.000; digits blurred
#:   (Gaussian sigma 0.8 px): 0.84-0.93; with added pixel noise (sd 6 of 255): 0.95.
#: memorization_share 0.1: fresh real draws score ~0.01-0.04 (by construction ~0.01), the GAN runs
#:   0.0; near-copies of train images (not byte-identical, so exact_copy_rate misses them) ~1.0.
IMAGE_MAX: dict[str, float] = {"image_detection_auc": 0.8, "exact_copy_rate": 0.05, "memorization_share": 0.1}


def thresholds(cfg: ValidateConfig) -> ValidateConfig:
    """``validate`` merged over the image defaults (:meth:`ValidateConfig.with_defaults`, the
    same merge :func:`synthgen.stages.validate` applies; merging twice changes nothing)."""
    return cfg.with_defaults(IMAGE_MIN, IMAGE_MAX)


def ingest(params: Params) -> dict[str, Any]:
    """Read ``data.path``, resize/convert, split; write the splits and ``schema.json``."""
    layout = ImageLayout(params.out)
    schema, train_split, holdout = ingest_images(params.data)
    begin_stage(layout.schema)  # schema.json, written last, commits the splits
    save_images(layout.train_images, train_split)
    save_images(layout.holdout_images, holdout)
    schema.save(layout.schema)
    log.info("ingest: %d train and %d holdout images, %d classes, %dx%dx%d", len(train_split), len(holdout),
             len(schema.classes), schema.image_size, schema.image_size, schema.channels)
    return {"n_train": len(train_split), "n_holdout": len(holdout), "classes": len(schema.classes)}


def train(params: Params) -> dict[str, Any]:
    """Fit ``image_cgan`` on the train split; save ``model/``, ``losses.csv`` and sample grids."""
    from synthgen.training.callbacks import AdaIntervalLog, SampleGrid

    layout = ImageLayout(params.out)
    ImageSchema.load(layout.schema)
    train_split = load_images(layout.train_images, "train split")
    if params.privacy.epsilon is not None:
        raise ConfigError("privacy.epsilon: image_cgan has no differential privacy; set privacy.epsilon: null")
    synthesizer = REGISTRY[params.model.name](
        params.model, checkpoint_dir=layout.checkpoints if params.model.checkpoint_every else None)
    ada = AdaIntervalLog()

    def callbacks(tracker):
        ada.log_metrics = tracker.log_metrics
        grids = SampleGrid(layout.samples, synthesizer.config.epochs, synthesizer.config.sample_every,
                           tracker.log_artifact)
        return [grids, ada]

    summary, tracker = train_and_track(params, layout, synthesizer, train_split, callbacks)
    if not process_group().is_main:  # torchrun: rank 0 writes
        return summary
    if ada.rows:
        write_text(layout.root / "ada.csv", pd.DataFrame(ada.rows).to_csv(index=False))
        tracker.log_artifact(layout.root / "ada.csv")
    else:  # no ADA this run: no stale trace from an earlier one
        (layout.root / "ada.csv").unlink(missing_ok=True)
    log.info("train: ADA p=%.3f at the end", summary.get("ada_p_final", float("nan")))
    return summary


def generate(params: Params) -> dict[str, Any]:
    """Sample ``generate.rows`` images (default: as many as the train split) into ``synthetic/``."""
    layout = ImageLayout(params.out)
    model = load(layout.model)
    if model.name != IMAGE_MODEL:
        raise ConfigError(f"{layout.model}: holds a {model.name!r} model, not {IMAGE_MODEL!r}; rerun train")
    rows = params.generate.rows or model.n_train_
    seed = params.generate.seed if params.generate.seed is not None else params.model.seed
    images, labels = model.sample(rows, conditions=params.generate.conditions or None, seed=seed)
    begin_stage(layout.generation)  # generation.json, written last, commits the images
    write_image_folder(layout.synthetic_dir, images, labels, model.classes_)
    sample_grid(images, labels, layout.synthetic_grid)
    tracker = resume_tracker(params, layout)
    generation = {
        "kind": "image",
        "rows": len(images),
        "image_shape": list(images.shape[1:]),
        "classes": model.classes_,
        "counts": {name: int(n) for name, n in zip(model.classes_, np.bincount(labels, minlength=len(model.classes_)))},
        "synthetic": layout.synthetic_dir.name,
        "files": f"{layout.synthetic_dir.name}/labels.csv",
        **provenance(params, layout, model, layout.synthetic_dir, seed, tracker),
        "augment": {"mode": model.config.disc_augment, "ada_p": model.meta_extra_.get("ada_p_final")},
    }
    write_json(layout.generation, generation)
    log.info("generate: %d images -> %s", len(images), layout.synthetic_dir)
    return generation


def validate(params: Params, synthetic: str | Path | None = None, out: str | Path | None = None) -> dict[str, Any]:
    """Score the synthetic images against the train split and the untouched holdout.

    With ``synthetic=None`` the pipeline's own ``synthetic/`` is scored and the run's
    ``validation.json``, ``manifest.json`` and ``report.html`` are written (and
    ``published/`` on a pass). With a path - a folder with ``labels.csv`` in the layout
    the generate stage writes - the verdict goes to ``out`` (default
    ``<folder>.validation.json``).
    """
    from synthgen.reports.images import build_image_report, build_public_image_report, neighbour_grid
    from synthgen.validation.images import image_report
    from synthgen.validation.verdict import evaluate

    layout = ImageLayout(params.out)
    schema = ImageSchema.load(layout.schema)
    train_split = load_images(layout.train_images, "train split")
    holdout = load_images(layout.holdout_images, "holdout split")
    audit = synthetic is not None
    folder = Path(synthetic) if audit else layout.synthetic_dir
    generation = None if audit else load_generation(layout, folder)  # the images generate recorded
    if not audit:
        begin_stage(layout.manifest)  # manifest.json, written with the verdict, commits this stage
    generated = read_image_folder(folder, schema.classes, schema.channels)
    labelled = schema.conditional
    scored = image_report(
        train_split.images, train_split.labels if labelled else None, holdout.images,
        holdout.labels if labelled else None, generated.images, generated.labels if labelled else None,
        seed=params.model.seed, device=params.model.device,
    )
    verdict = evaluate(scored["metrics"], thresholds(params.validate_))
    report = {**verdict, "details": scored["details"]}
    if audit:
        target = Path(out) if out else folder.with_name(folder.name + ".validation.json")
        write_json(target, report)
        return report
    manifest, tracker = record_verdict(params, layout, report, generation,
                                       ("image_detection_auc", "generated_class_accuracy", "fid_domain"),
                                       IMAGE_KEY_METRICS)
    write_text(layout.datasheet, render_image_datasheet(manifest, schema, model_meta(layout), report))
    grid = sample_grid(generated.images, generated.labels)
    holdout_grid = sample_grid(holdout.images, holdout.labels)  # real: the data owner's report only
    pairs = neighbour_grid(generated.images, train_split.images, report["details"]["memorization"]["nearest"])
    losses = pd.read_csv(layout.losses) if layout.losses.is_file() else None
    write_text(layout.report, build_image_report(report, grid, holdout_grid, losses, manifest, pairs))  # data owner
    write_text(layout.public_report, build_public_image_report(report, grid, losses, manifest))  # no real image
    conclude(params, layout, tracker, report, manifest, layout.synthetic_dir,
             (layout.validation, layout.manifest, layout.report, layout.public_report, layout.datasheet),
             synthetic=(layout.synthetic_dir / "labels.csv", layout.synthetic_grid))
    log.info("validate: %s (image_detection_auc=%s, generated_class_accuracy=%s, fid_random=%s, metric failures %s)",
             "passed" if report["passed"] else "FAILED", report["metrics"].get("image_detection_auc"),
             report["metrics"].get("generated_class_accuracy"), report["metrics"].get("fid_random"),
             report["metrics"].get("metric_failures"))
    return report
