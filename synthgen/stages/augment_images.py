"""The augment stage for ``data.kind: image``: class-conditional synthetic images, measured.

:mod:`synthgen.stages` dispatches here on ``data.kind``, so ``synthgen augment``, the
Prefect augment flow and the DVC stage work on image runs unchanged. The
class is the image's label (``data.target`` is not used); the row plan is the tabular
one (:func:`synthgen.stages.augment_common.plan_rows`): ``rebalance`` lifts every class to
``round(ratio x majority count)`` images, ``enlarge`` adds ``factor - 1`` times the train
split in the class mix of the train split. Each class is drawn with
``model.sample(k, conditions={"label": cls}, seed=...)`` (exact per class) under its own
seed derived from ``augment.seed``.

Written under ``output.dir/augment/``:

* ``images/real/<class>/00001.png`` - the real train split, as it was ingested;
* ``images/synthetic/<class>/00001.png`` - the generated images, in their own folder;
* ``images/labels.csv`` - ``file,label,class,source`` for every image (``source`` is
  ``real`` or ``synthetic``), the index a consumer trains from;
* ``manifest.json``, ``benefit.json``, ``report.html`` (with a grid of the synthetic
  images), all logged to the pipeline's MLflow run.

**Benefit, measured.** For ``augment.seeds`` repeats ``i`` (synthetic draw seed
``augment.seed + i``, network seed ``i``; repeat 0 is the written draw) the small CNN
of :mod:`synthgen.validation.images` is trained three ways and tested on the untouched
real holdout: ``real`` (the real train split), ``augmented`` (real plus synthetic) and
``reweighted`` (the real split with a class-weighted loss, inverse class frequencies:
the free alternative for imbalance). All three train for the same number of Adam steps
(enough for about 30 epochs of the augmented set, at most; see :func:`synthgen.validation.images.steps_for`), so the
synthetic images are not credited with extra compute. Scores and their summary are the
tabular stage's (:func:`synthgen.validation.benefit.holdout_scores`,
:func:`synthgen.validation.benefit.summarize`); the one downstream model is named ``small_cnn``.
``augment.models`` (scikit-learn classifiers) applies to tables only.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthgen.config import AugmentConfig, Params
from synthgen.data.images import ImageSet, load_images, write_image_folder
from synthgen.errors import ConfigError, DataError, ModelError
from synthgen.io import atomic_path, data_digest, write_json, write_text
from synthgen.reports.augment import build_augment_report
from synthgen.reports.datasheet import render_augment_datasheet
from synthgen.data.images import sample_grid
from synthgen.stages.augment_common import (
    AugmentLayout, class_counts, draw_seed, log_augment, plan_rows, record_fields,
)
from synthgen.stages.common import ImageLayout, resume_tracker
from synthgen.synthesizers import load
from synthgen.training.device import resolve_device
from synthgen.validation.benefit import METRICS, holdout_scores, summarize
from synthgen.version import __version__

log = logging.getLogger(__name__)

DOWNSTREAM = "small_cnn"  # the downstream model's name in benefit.json
IMAGES_DIR = "images"  # under output.dir/augment


def class_plan(train: ImageSet, config: AugmentConfig) -> tuple[dict[str, int], dict[str, int]]:
    """(real images per class, largest first; synthetic images to add per class)."""
    counts = class_counts(pd.Series([train.classes[i] for i in train.labels], dtype=object))
    return counts, plan_rows(counts, config)


def synthesize_images(model: Any, plan: dict[str, int], like: ImageSet, seed: int) -> ImageSet:
    """Draw ``plan[cls]`` images of every class, each class under its own derived seed
    (classes and image shape as in ``like``, the real train split)."""
    images, labels = [], []
    for i, (cls, k) in enumerate(plan.items()):
        if k > 0:
            drawn = model.sample(k, conditions={"label": cls}, seed=draw_seed(seed, i))
            images.append(drawn.images)
            labels.append(drawn.labels)
    if not images:
        return ImageSet(np.zeros((0, *like.images.shape[1:]), np.uint8), np.zeros(0, np.int64), list(like.classes))
    return ImageSet(np.concatenate(images), np.concatenate(labels).astype(np.int64), list(like.classes))


def write_augmented(directory: Path, real: ImageSet, synthetic: ImageSet) -> int:
    """``real/`` and ``synthetic/`` ImageFolders plus one ``labels.csv`` with a ``source``
    column, replaced atomically. Returns the number of images written."""
    with atomic_path(directory) as tmp:
        tmp.mkdir(parents=True)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["file", "label", "class", "source"])
        for source, part in (("real", real), ("synthetic", synthetic)):
            rows = write_image_folder(tmp / source, part.images, part.labels, part.classes)
            writer.writerows([f"{source}/{r['file']}", r["label"], r["class"], source] for r in rows)
        (tmp / "labels.csv").write_text(buffer.getvalue())
    return len(real) + len(synthetic)


# -- benefit ---------------------------------------------------------------------------
def balanced_weights(labels: np.ndarray, classes: int):
    """Inverse class frequencies, ``n / (classes x count)`` (scikit-learn's "balanced");
    classes absent from ``labels`` get weight 0."""
    import torch

    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def score_images_once(real: ImageSet, synthetic: ImageSet, holdout: ImageSet, minority: int, seed: int,
                      steps: int, device: str) -> list[dict[str, Any]]:
    """One repeat: the small CNN trained on each arm for ``steps`` Adam steps, scored on the holdout."""
    import torch

    from synthgen.validation.images import predict, to_tensor, train_classifier

    n_classes = len(real.classes)
    x_real, x_ho = to_tensor(real.images, device), to_tensor(holdout.images, device)
    y_real = torch.from_numpy(real.labels).to(device)
    if len(synthetic):
        x_aug = torch.cat([x_real, to_tensor(synthetic.images, device)])
        y_aug = torch.cat([y_real, torch.from_numpy(synthetic.labels).to(device)])
    else:
        x_aug, y_aug = x_real, y_real
    arms = {"real": (x_real, y_real, None), "augmented": (x_aug, y_aug, None),
            "reweighted": (x_real, y_real, balanced_weights(real.labels, n_classes).to(device))}
    rows = []
    for arm, (x, y, weight) in arms.items():
        net = train_classifier(x, y, n_classes, steps=steps, seed=seed, class_weight=weight)
        _, pred = predict(net, x_ho)
        rows.append({"model": DOWNSTREAM, "arm": arm, **holdout_scores(holdout.labels, pred, minority)})
    return rows


def measure_image_benefit(real: ImageSet, holdout: ImageSet, model: Any, plan: dict[str, int], minority: int,
                          config: AugmentConfig, device: str, first_draw: ImageSet | None = None) -> dict[str, Any]:
    """The small CNN on real vs real+synthetic vs reweighted over ``config.seeds`` repeats."""
    from synthgen.validation.images import steps_for

    start = time.perf_counter()
    _, steps = steps_for(len(real) + sum(plan.values()), None)
    records = []
    for i in range(config.seeds):
        draw_seed = config.seed + i
        synthetic = (first_draw if i == 0 and first_draw is not None
                     else synthesize_images(model, plan, real, draw_seed))
        for row in score_images_once(real, synthetic, holdout, minority, i, steps, device):
            records.append({"seed": i, "draw_seed": draw_seed, **row})
        log.info("augment benefit: repeat %d/%d done", i + 1, config.seeds)
    return {
        "measured": True,
        "protocol": {
            "test_set": "holdout (real, untouched)", "repeats": config.seeds, "models": [DOWNSTREAM],
            "arms": {"real": "real train split", "augmented": "real + synthetic images",
                     "reweighted": "real train split, class-weighted loss (inverse frequencies)"},
            "lift": "augmented - real, paired per repeat", "metrics": list(METRICS),
            "draw_seeds": [config.seed + i for i in range(config.seeds)],
            "downstream": f"synthgen.validation.images.SmallCNN, {steps} Adam steps of 64 images (lr 1e-3), "
                          "the same for every arm",
        },
        "minority": real.classes[minority],
        **summarize(records, [DOWNSTREAM]),
        "records": records,
        "seconds": time.perf_counter() - start,
    }


# -- the stage -------------------------------------------------------------------------
def _minority(config: AugmentConfig, counts: dict[str, int], classes: list[str]) -> int:
    if config.minority is None:
        return classes.index(list(counts)[-1])
    if str(config.minority) not in classes:
        raise ConfigError(f"augment.minority: {config.minority!r} is not a class of the images; classes: {classes}")
    return classes.index(str(config.minority))


def augment(params: Params) -> dict[str, Any]:
    """Write the augmented image set, its manifest, the measured benefit and a report.

    Raises:
        ModelError: no trained ``image_cgan`` under ``output.dir/model``.
        DataError: the splits are missing, or the images have fewer than 2 classes.
        ConfigError: ``augment.minority`` is not a class.
    """
    layout, out = ImageLayout(params.out), AugmentLayout(params.out)
    if not (layout.model / "synthesizer.json").is_file():
        raise ModelError(f"output.dir: no trained model in {layout.model}; run `synthgen train` first")
    model = load(layout.model)
    if model.data_kind != "image":
        raise ModelError(f"{layout.model}: holds a {model.name!r} model, not an image model; rerun train")
    train = load_images(layout.train_images, "train split")
    config = params.augment
    holdout = load_images(layout.holdout_images, "holdout split") if config.benefit else None
    if len(train.classes) < 2:
        raise DataError(f"{layout.train_images}: {len(train.classes)} class(es); augment needs labelled images "
                        "of at least 2 classes")
    counts, plan = class_plan(train, config)
    minority = _minority(config, counts, train.classes)
    holdout_hash = data_digest(layout.holdout_images) if layout.holdout_images.is_file() else None

    start = time.perf_counter()
    synthetic = synthesize_images(model, plan, train, config.seed)
    seconds = time.perf_counter() - start
    images_dir = out.dir / IMAGES_DIR
    total = write_augmented(images_dir, train, synthetic)
    after = {c: counts[c] + plan[c] for c in counts}
    log.info("augment: %s added %d synthetic images in %.1fs (%s)", config.mode, len(synthetic), seconds,
             ", ".join(f"{c}: {counts[c]} -> {after[c]}" for c in counts))

    tracker = resume_tracker(params, layout)
    benefit: dict[str, Any] = {"measured": False}
    if config.benefit:
        benefit = measure_image_benefit(train, holdout, model, plan, minority, config,
                                        resolve_device(params.model.device), first_draw=synthetic)
    write_json(out.benefit, benefit)
    manifest = {
        "kind": "image",
        "unit": "images",
        "target": "label",
        "mode": config.mode,
        "ratio": config.ratio if config.mode == "rebalance" else None,
        "factor": config.factor if config.mode == "enlarge" else None,
        "classes": {c: {"before": counts[c], "added": plan[c], "after": after[c]} for c in counts},
        "rows": {"real": len(train), "synthetic": len(synthetic), "total": total},
        "files": f"{IMAGES_DIR}/labels.csv",
        "provenance": f"{IMAGES_DIR}/real/ and {IMAGES_DIR}/synthetic/ folders; column 'source' of labels.csv",
        "image_shape": list(train.images.shape[1:]),
        "class_names": list(train.classes),  # the label order of labels.csv
        "model": model.name,
        **record_fields(params, layout.model, layout.train_images, holdout_hash, images_dir, seconds, benefit,
                        train.classes[minority]),
        "mlflow_run_id": tracker.run_id,
        "synthgen_version": __version__,
    }
    write_json(out.manifest, manifest)
    write_text(out.datasheet, render_augment_datasheet(manifest, benefit))
    grid = ""
    if len(synthetic):
        import base64

        png = base64.b64encode(sample_grid(synthetic.images, synthetic.labels)).decode()
        grid = ("<h2>Synthetic images added (one row per class)</h2>"
                f'<img alt="synthetic images" style="image-rendering:pixelated" src="data:image/png;base64,{png}">')
    write_text(out.report, build_augment_report(manifest, benefit, extra_html=grid))
    log_augment(tracker, out, config, benefit, len(synthetic), total)
    return manifest

