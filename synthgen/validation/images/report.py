"""The image report: :func:`image_report`, every metric it computes, and what each means.

Metrics of :func:`image_report` (``None`` when not computable). Distribution metrics are
computed in three feature spaces, each against the train split, and each *beside the real
holdout's own value* (``details.baseline``: what real, unseen images score). Generated set
and holdout are compared at the same sample size (:mod:`~synthgen.validation.images.compare`).

* ``image_detection_auc``: a classifier two-sample test between the generated images
  and the real **holdout** (:mod:`~synthgen.validation.images.detection`): the larger of
  the cross-validated AUCs of a small CNN and of a logistic regression on pixels + HOG,
  floored at 0.5. 0.5 = indistinguishable (real images against the holdout score
  0.50-0.57, up to 0.68 with 40 per side), 1 = always told apart (noise, textures). Per
  class in ``details.image_detection_auc_per_class``; each model's AUC in
  ``details.detection``. Nothing here is trained on the train split, so textures that
  fool the judge are told apart; copies of train images are real images and pass it -
  the memorization metrics catch them. Gated by default
  (:data:`synthgen.stages.images.IMAGE_MAX`: ≤ 0.8).
* ``fid_random``, ``kid_random``, ``precision_random``, ``recall_random``,
  ``coverage_random``: FID, KID, precision, recall, coverage in the features of a
  fixed, randomly initialised CNN (:class:`~synthgen.validation.images.features.RandomCNN`,
  seeded, never trained: 240 pooled activations at four depths). Not trained on the
  train split, so a generator cannot fool it by looking like what the judge learned.
* ``fid_pixel``, ``kid_pixel``, ``precision_pixel``, ``recall_pixel``,
  ``coverage_pixel``: the same in simple features (downsampled pixels, a HOG
  gradient-orientation histogram, intensity and gradient-magnitude histograms;
  :func:`~synthgen.validation.images.features.pixel_hog_features`).
* ``fid_domain``, ``kid_domain``, ``precision``, ``recall``, ``density``, ``coverage``:
  the same in the *judge's* features, a small CNN trained on the real train split
  (``details.judge.train_images`` images; the "Fréchet LeNet distance" idea). The judge
  sees what separates the train classes and nothing else: a generator can fool these
  (the issue's checkerboard textures scored a better fid_domain than real images).
  Comparable only under the same judge (seed, epochs, train split).

  How to read them: FID (Fréchet distance of Gaussians fitted to the features, 0 = same
  mean and covariance; biased upwards at small n, hence the size matching); KID
  (unbiased MMD² with the kernel ``(x·y / d + 1)³`` against up to 1000 train rows;
  ≈ 0 for a real draw, can be slightly negative); precision (share of generated images
  inside some train image's k-NN ball, ``PRDC_K`` = 5: fidelity), recall (share of train
  images inside some generated ball: diversity), density (mean count of train balls
  holding a generated image / k, ≈ 1 for a real draw), coverage (share of train images
  whose ball holds a generated image). ``details.noise_sd`` gives, per metric, the
  spread of "generated minus holdout" between two real draws of the same size.
  None of these scales compares with Inception FID; compare runs under the same setup,
  and always with the holdout's value.
* ``generated_class_accuracy``: share of generated images the judge classifies as
  the class they were generated for (chance is 1 / classes; read it against
  ``real_accuracy``). Per class in ``details``. A generator that ignores its labels
  scores near chance; one that fools the judge scores high anyway - read it with
  ``image_detection_auc``.
* ``tstr_accuracy``: train-synthetic-test-real: a fresh judge-architecture CNN trained on
  the generated images with the judge's recipe and steps, scored on the real holdout.
* ``real_accuracy``: the judge (trained on the real train split) on the real holdout.
* ``memorization_ratio``: median pixel-space L2 distance generated → nearest train
  image over the median holdout → nearest train image (≈ 1 fresh, → 0 copies).
* ``memorization_share``: share of generated images closer to train (pixel space)
  than the 1st percentile of holdout → train distances (≈ 0.01 for fresh draws).
  ``details.memorization.nearest`` lists the generated images closest to a train image
  with that image's index (the report shows them side by side).
* ``exact_copies`` / ``exact_copy_rate``: generated images byte-identical to a train image.
* ``metric_failures``: how many distribution metrics score the generated set *better*
  than the real holdout beyond noise (``details.metric_failures``: name, generated and
  holdout values, margin, space, reason; margins in
  :mod:`~synthgen.validation.images.compare`). Real unseen images are the best a
  generator can honestly reach; beating them means copies of train images, or a
  feature space blind to what the generator gets wrong. Such a metric "cannot be
  trusted here"; the report says so instead of showing it as good news.

Metric failures, the judge's included, do **not** fail the verdict by default: the
conditions that cause them are gated directly - copies by ``exact_copy_rate`` and
``memorization_share``, blind features by ``image_detection_auc`` - and the margins are
heuristics that a fresh real draw crosses now and then. ``validate.max.metric_failures:
0`` makes them fail it. They are always in ``validation.json`` and the report.

Caveats: metrics need a holdout never trained on; accuracies need labels (int arrays; a
generated label unknown to the train split is an error). Pixel-space memorization
catches copies and near-copies, not shifted or recoloured ones.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from synthgen.errors import DataError
from synthgen.validation.images.compare import KID_TRAIN, metric_failures, space_metrics
from synthgen.validation.images.detection import TRUSTED_PER_SIDE, image_detection
from synthgen.validation.images.features import pixel_hog_features, random_features, standardize
from synthgen.validation.images.judge import (
    BATCH_SIZE,
    FEATURE_DIM,
    Judge,
    check_images,
    check_labels,
    fit_judge,
    images_digest,
    predict,
    to_tensor,
    torch_threads,
    train_classifier,
)
from synthgen.validation.images.metrics import PRDC_K, exact_copy_mask, nearest_neighbours

#: metric names per feature space: {space: {kind: name}} (kinds of compare.METRIC_KINDS)
SPACES = {
    "random": {"fid": "fid_random", "kid": "kid_random", "precision": "precision_random",
               "recall": "recall_random", "coverage": "coverage_random"},
    "pixel": {"fid": "fid_pixel", "kid": "kid_pixel", "precision": "precision_pixel",
              "recall": "recall_pixel", "coverage": "coverage_pixel"},
    "judge": {"fid": "fid_domain", "kid": "kid_domain", "precision": "precision", "recall": "recall",
              "density": "density", "coverage": "coverage"},
}  # fmt: skip
IMAGE_METRICS = (
    "image_detection_auc", *SPACES["random"].values(), *SPACES["pixel"].values(), *SPACES["judge"].values(),
    "generated_class_accuracy", "tstr_accuracy", "real_accuracy",
    "memorization_ratio", "memorization_share", "exact_copies", "exact_copy_rate", "metric_failures",
)  # fmt: skip
MAX_POINTS = 5000  # distribution and nearest-neighbour metrics: at most this many images per set
NEAREST_PAIRS = 8  # details.memorization.nearest: the generated images closest to train


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _subsample(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= MAX_POINTS else np.sort(rng.choice(n, MAX_POINTS, replace=False))


def _memorization(d_gen: np.ndarray, d_hold: np.ndarray) -> dict[str, float | None]:
    """Ratio of median NN distances to train and the share below the holdout's 1st percentile."""
    med_hold = float(np.median(d_hold))
    return {
        "ratio": float(np.median(d_gen)) / med_hold if med_hold > 0 else None,
        "share": float((d_gen < np.percentile(d_hold, 1)).mean()),
        "median_generated": float(np.median(d_gen)),
        "median_holdout": med_hold,
    }


def _distances(gen: np.ndarray, hold: np.ndarray, train: np.ndarray, gen_copies: np.ndarray,
               hold_copies: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NN distances to train of generated and holdout rows (exact copies count as 0), and
    the index of each generated row's nearest train row."""
    d_gen, j_gen = nearest_neighbours(gen, train)
    d_hold, _ = nearest_neighbours(hold, train)
    d_gen[gen_copies], d_hold[hold_copies] = 0.0, 0.0
    return d_gen, d_hold, j_gen


def _check_inputs(train_x, train_y, holdout_x, holdout_y, gen_x, gen_y):
    train_x, holdout_x, gen_x = (check_images(n, a) for n, a in
                                 (("train_x", train_x), ("holdout_x", holdout_x), ("gen_x", gen_x)))
    for name, arr in (("holdout_x", holdout_x), ("gen_x", gen_x)):
        if arr.shape[1:] != train_x.shape[1:]:
            raise DataError(f"{name}: images are {arr.shape[1:]} (H×W×C) but train_x images are "
                            f"{train_x.shape[1:]}")
    return (train_x, check_labels("train_y", train_y, len(train_x)), holdout_x,
            check_labels("holdout_y", holdout_y, len(holdout_x)), gen_x, check_labels("gen_y", gen_y, len(gen_x)))


def _accuracies(judge: Judge, p_hold, p_gen, holdout_x, holdout_y, gen_x, gen_y, seed: int):
    """(generated, real, tstr accuracy, per-class rows) of the judge; all None without classes."""
    classes = judge.classes
    gen_acc = real_acc = tstr_acc = None
    per_class: dict[str, dict[str, float | None]] = {}
    if classes is None:
        return gen_acc, real_acc, tstr_acc, per_class
    hold_idx = None
    if holdout_y is not None:
        hold_idx = np.where(np.isin(holdout_y, classes), np.searchsorted(classes, holdout_y), -1)
        real_acc = float((p_hold == hold_idx).mean())
    gen_idx = np.searchsorted(classes, gen_y) if gen_y is not None else None
    if gen_idx is not None:
        gen_acc = float((p_gen == gen_idx).mean())
    if gen_idx is not None and hold_idx is not None:
        tstr = train_classifier(to_tensor(gen_x, judge.device), torch.from_numpy(gen_idx).to(judge.device),
                                len(classes), steps=judge.steps, seed=seed + 10)
        _, p_tstr = predict(tstr, to_tensor(holdout_x, judge.device))
        tstr_acc = float((p_tstr == hold_idx).mean())
    for j, c in enumerate(classes):
        row: dict[str, float | None] = {"generated": None, "real": None}
        if gen_idx is not None and (gen_idx == j).any():
            row["generated"] = float((p_gen[gen_idx == j] == j).mean())
        if hold_idx is not None and (hold_idx == j).any():
            row["real"] = float((p_hold[hold_idx == j] == j).mean())
        per_class[str(int(c))] = row
    return gen_acc, real_acc, tstr_acc, per_class


# -- the report --------------------------------------------------------------------------
def image_report(train_x: np.ndarray, train_y: np.ndarray | None, holdout_x: np.ndarray,
                 holdout_y: np.ndarray | None, gen_x: np.ndarray, gen_y: np.ndarray | None, *,
                 seed: int = 0, device: str = "cpu", epochs: int | None = None,
                 judge: Judge | None = None) -> dict[str, Any]:
    """Score generated images against the real train split and the untouched holdout.

    See the module docstring for what each metric means and its caveats.

    Args:
        train_x, holdout_x, gen_x: uint8 images N×H×W×C (C = 1 or 3; N×H×W is read as
            C = 1), all of one size, at least 6 per set.
        train_y, holdout_y, gen_y: int class labels, one per image, or None
            (unconditional data: the accuracy metrics and per-class detection are then
            None; without ``train_y`` the judge learns rotations instead of classes).
        seed: seeds the judge, the TSTR classifier (``seed + 10``), the random network,
            the detection test, KID subsets and subsampling; default 0. Same inputs and
            seed give the same report on CPU.
        device: ``cpu`` (default), ``cuda``, ``mps`` or ``auto`` (judge, TSTR, detection CNN).
        epochs: judge training epochs over the train split; default None = enough
            epochs for about 600 optimizer steps (at least 3, at most 30). The TSTR
            classifier gets the same number of steps.
        judge: a judge from :func:`fit_judge` on these same ``train_x`` / ``train_y``;
            default None = fit one here with ``seed``, ``device`` and ``epochs``.

    Returns:
        ``{"metrics": {name: float | int | None for name in IMAGE_METRICS},
        "details": {...}}``, JSON-safe. ``details`` holds ``baseline`` (the holdout's
        own value of every distribution metric, size-matched), ``metric_failures``,
        ``image_detection_auc_per_class`` and ``detection`` (models, folds, sizes),
        per-class accuracies, the judge (task, ``train_images``, epochs, steps, holdout
        accuracy), memorization (pixel and judge-feature space, ``nearest`` pairs),
        ``matched_n`` (the size-matched subset size), KID's std and subset size, set sizes
        and ``seconds`` per phase.

    Raises:
        DataError: images not uint8 N×H×W×C, sizes differ between sets, too few
            images, labels not one int per image, a generated label that the train
            split does not have, or a ``judge`` fitted on other train images.
    """
    from threadpoolctl import threadpool_limits

    t_start = time.perf_counter()
    train_x, train_y, holdout_x, holdout_y, gen_x, gen_y = _check_inputs(
        train_x, train_y, holdout_x, holdout_y, gen_x, gen_y)
    if judge is None:
        judge = fit_judge(train_x, train_y, seed=seed, device=device, epochs=epochs)
        judge_seconds = judge.seconds
    else:
        if judge.train_digest != images_digest(train_x):
            raise DataError("judge: it was fitted on other train images than train_x")
        judge_seconds = 0.0
    classes = judge.classes
    if classes is not None and gen_y is not None:
        unknown = np.setdiff1d(np.unique(gen_y), classes)
        if len(unknown):
            raise DataError(f"gen_y: label(s) {unknown[:5].tolist()} do not occur in train_y")
    rng = np.random.default_rng(seed)
    seconds: dict[str, float] = {"judge": judge_seconds}
    i_train, i_hold, i_gen = (_subsample(len(a), rng) for a in (train_x, holdout_x, gen_x))

    t0 = time.perf_counter()
    f_hold, p_hold = judge.predict(holdout_x)
    f_gen, p_gen = judge.predict(gen_x)
    sets = (train_x[i_train], holdout_x[i_hold], gen_x[i_gen])
    features = {"judge": (judge.train_features[i_train], f_hold[i_hold], f_gen[i_gen])}
    with threadpool_limits(1), torch_threads(1):  # small matrices: more threads only slow them down when shared
        features["random"] = tuple(standardize(*(random_features(a, seed=seed) for a in sets)))
        features["pixel"] = tuple(standardize(*(pixel_hog_features(a) for a in sets)))
    seconds["features"] = time.perf_counter() - t0

    # distribution metrics in each space, generated and holdout size-matched; metric failures
    t0 = time.perf_counter()
    values: dict[str, float] = {}
    baseline: dict[str, Any] = {}
    noise: dict[str, float] = {}
    failures: list[dict[str, Any]] = []
    with threadpool_limits(1), torch_threads(1):
        for space, names in SPACES.items():
            scored = space_metrics(*features[space], seed=int(rng.integers(2**31)))
            for kind, name in names.items():
                values[name], baseline[name] = scored["generated"][kind], scored["holdout"][kind]
                noise[name] = scored["noise_sd"][kind]
            failures += metric_failures(scored, names, space)
    seconds["distribution"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    detection = image_detection(holdout_x, holdout_y, gen_x, gen_y, seed=seed, device=judge.device)
    seconds["detection"] = time.perf_counter() - t0
    if detection["image_detection_auc"] is not None and detection["n_per_side"] < TRUSTED_PER_SIDE:
        failures.append({"name": "image_detection_auc", "space": "detection",
                         "generated": detection["image_detection_auc"], "holdout": None, "margin": None,
                         "reason": f"only {detection['n_per_side']} images per side (at least {TRUSTED_PER_SIDE} "
                                   "needed): too few for the test to tell a set apart from real images, so a "
                                   "low value is no evidence; judge this run by its grids and memorization"})

    # memorization: pixel space (headline) and judge-feature space
    t0 = time.perf_counter()
    flat = lambda a: a.reshape(len(a), -1)  # noqa: E731 (uint8; distances scaled below)
    gen_copies, hold_copies = exact_copy_mask(gen_x, train_x), exact_copy_mask(holdout_x, train_x)
    d_gen, d_hold, j_gen = _distances(flat(gen_x[i_gen]), flat(holdout_x[i_hold]), flat(train_x),
                                      gen_copies[i_gen], hold_copies[i_hold])
    mem_pix = _memorization(d_gen, d_hold)
    for key in ("median_generated", "median_holdout"):  # L2 over H·W·C of pixels in [0, 1]
        mem_pix[key] /= 255.0
    closest = np.argsort(d_gen, kind="stable")[:NEAREST_PAIRS]
    nearest = [{"generated": int(i_gen[i]), "train": int(j_gen[i]), "distance": round(float(d_gen[i]) / 255.0, 4)}
               for i in closest]
    fd_gen, fd_hold, _ = _distances(f_gen[i_gen], f_hold[i_hold], judge.train_features, gen_copies[i_gen],
                                    hold_copies[i_hold])
    mem_feat = _memorization(fd_gen, fd_hold)
    copies, holdout_copies = int(gen_copies.sum()), int(hold_copies.sum())
    seconds["memorization"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    gen_acc, real_acc, tstr_acc, per_class = _accuracies(judge, p_hold, p_gen, holdout_x, holdout_y, gen_x,
                                                         gen_y, seed)
    seconds["accuracy"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_start

    metrics = {
        "image_detection_auc": detection["image_detection_auc"],
        **{name: values[name] for names in SPACES.values() for name in names.values()},
        "generated_class_accuracy": gen_acc, "tstr_accuracy": tstr_acc, "real_accuracy": real_acc,
        "memorization_ratio": mem_pix["ratio"], "memorization_share": mem_pix["share"],
        "exact_copies": copies, "exact_copy_rate": copies / len(gen_x), "metric_failures": len(failures),
    }
    details = {
        "baseline": {**{k: _num(v) for k, v in baseline.items()}, "exact_copies": holdout_copies,
                     "n": len(holdout_x)},
        "metric_failures": [{k: (_num(v) if isinstance(v, float) else v) for k, v in f.items()} for f in failures],
        "image_detection_auc_per_class": {c: _num(row["auc"]) for c, row in detection["per_class"].items()},
        "detection": {k: v for k, v in detection.items() if k not in ("image_detection_auc", "seconds")},
        "noise_sd": {k: _num(v) for k, v in noise.items()},
        "matched_n": scored["n"],
        "matched_subsets": dict(zip(("generated", "holdout"), scored["subsets"])),
        "kid_train_rows": min(KID_TRAIN, len(i_train)),
        "prdc_k": PRDC_K,
        "per_class_accuracy": per_class,
        "chance_accuracy": 1.0 / len(classes) if classes is not None else None,
        "judge": {"task": judge.task, "classes": None if classes is None else [int(c) for c in classes],
                  "train_images": len(train_x), "epochs": judge.epochs, "steps": judge.steps,
                  "batch_size": BATCH_SIZE, "feature_dim": FEATURE_DIM, "feature_scale": judge.scale,
                  "holdout_accuracy": real_acc, "device": judge.device, "seed": judge.seed},
        "memorization": {"pixel": {k: _num(v) for k, v in mem_pix.items()},
                         "feature": {k: _num(v) for k, v in mem_feat.items()}, "nearest": nearest},
        "n": {"train": len(train_x), "holdout": len(holdout_x), "generated": len(gen_x)},
        "image_shape": list(train_x.shape[1:]),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }
    return {"metrics": {k: (v if isinstance(v, int) else _num(v)) for k, v in metrics.items()},
            "details": details}
