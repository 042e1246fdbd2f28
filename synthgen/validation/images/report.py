"""The image report: :func:`image_report` and its HTML section.

Metrics of :func:`image_report` (``None`` when not computable):

* ``fid_domain``: Fréchet distance between Gaussians fitted to the judge's features
  of the generated images and of the train images (0 = same mean and covariance).
  Not comparable with Inception FID, nor across judges (another seed, architecture or
  train split gives another scale); compare runs scored by the same setup, and read it
  against ``details.baseline.fid_domain`` (the holdout scored the same way: what real,
  unseen images get). That baseline is above 0 (0.17 on digits) because the judge
  has seen the train images and not the holdout, and copies of train score below it
  (0.07): low FID does not mean "new", see the memorization metrics. FID is biased
  upwards at small n (the bias shrinks as 1/n), so compare sets of similar size.
* ``kid_domain``: kernel Inception distance in the same features: the unbiased MMD²
  estimate with the cubic polynomial kernel ``k(x, y) = (x·y / d + 1)³``, averaged
  over ``KID_SUBSETS`` = 100 random subsets of ``min(1000, n_generated, n_train)``
  images per side (``details.kid_domain_std`` is the spread over subsets). Unbiased,
  so it can be slightly negative and is ≈ 0 for a draw from the real distribution;
  better than FID at small n.
* ``precision``, ``recall``, ``density``, ``coverage``: Naeem et al. (2020), k-NN
  manifolds (``PRDC_K`` = 5) in the same features, train as the real set. Precision:
  share of generated images inside some real image's k-NN ball (fidelity); recall:
  share of real images inside some generated ball (diversity); density: mean count of
  real balls holding a generated image, / k (≈ 1 for a real draw, rewards mass where
  real data is dense, can exceed 1); coverage: share of real images whose ball holds a
  generated image (robust to outliers). Sets are subsampled to ``MAX_POINTS`` each.
* ``generated_class_accuracy``: share of generated images the judge classifies as
  the class they were generated for (chance is 1 / classes; read it against
  ``real_accuracy``, the judge's accuracy on the holdout). Per class in ``details``.
  A generator that ignores its labels scores near chance even when its FID is good.
* ``tstr_accuracy``: train-synthetic-test-real — a fresh :class:`SmallCNN` trained on
  the generated images and labels with the judge's recipe and number of optimizer
  steps, scored on the real holdout.
* ``real_accuracy``: train-real-test-real reference: the judge (trained on the real
  train split) scored on the real holdout.
* ``memorization_ratio``: median pixel-space L2 distance generated → nearest train
  image over the median holdout → nearest train image (≈ 1 for fresh draws, → 0 for
  copies; the holdout shows how close *unseen* real images come to train).
* ``memorization_share``: share of generated images closer to train (pixel space)
  than the 1st percentile of holdout → train distances (≈ 0.01 for fresh draws).
* ``exact_copies`` / ``exact_copy_rate``: generated images byte-identical to a train
  image (count over all generated images / share). ``details`` has the same figures in
  feature space and for the holdout itself (real datasets can hold duplicates).

Caveats: the judge is small and trained briefly; its features see what separates the
train classes (or rotations), not everything a person sees, so a generator can fool it
with artefacts it ignores. Metrics in its feature space are comparable only under the
same judge (same seed, epochs, train split). Memorization in pixel space catches copies
and near-copies, not shifted or recoloured ones. All metrics need a holdout that was
never trained on; accuracies need labels (int arrays; a generated label unknown to the
train split is an error).
"""

from __future__ import annotations

import base64
import html
import math
import time
from typing import Any

import numpy as np
import torch

from synthgen.errors import DataError
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
    train_classifier,
)
from synthgen.validation.images.metrics import (
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    PRDC_K,
    exact_copy_mask,
    fid_from_features,
    kernel_distance,
    nearest_distances,
    prdc,
)

IMAGE_METRICS = (
    "fid_domain", "kid_domain", "generated_class_accuracy", "tstr_accuracy", "real_accuracy",
    "precision", "recall", "density", "coverage",
    "memorization_ratio", "memorization_share", "exact_copies", "exact_copy_rate",
)  # fmt: skip
MAX_POINTS = 5000  # PRDC and nearest-neighbour queries: at most this many images per set


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _subsample(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= MAX_POINTS else np.sort(rng.choice(n, MAX_POINTS, replace=False))


def _memorization(gen: np.ndarray, hold: np.ndarray, train: np.ndarray, gen_copies: np.ndarray,
                  hold_copies: np.ndarray) -> dict[str, float | None]:
    """Ratio of median NN distances to train and the share below the holdout's 1st
    percentile; exact copies (boolean masks) count as distance 0."""
    d_gen, d_hold = nearest_distances(gen, train), nearest_distances(hold, train)
    d_gen[gen_copies], d_hold[hold_copies] = 0.0, 0.0
    med_hold = float(np.median(d_hold))
    return {
        "ratio": float(np.median(d_gen)) / med_hold if med_hold > 0 else None,
        "share": float((d_gen < np.percentile(d_hold, 1)).mean()),
        "median_generated": float(np.median(d_gen)),
        "median_holdout": med_hold,
    }


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
            (unconditional data: the accuracy metrics are then None; without
            ``train_y`` the judge learns rotations instead of classes).
        seed: seeds the judge, the TSTR classifier (``seed + 10``), KID subsets and
            subsampling; default 0. Same inputs and seed give the same report on CPU.
        device: ``cpu`` (default), ``cuda``, ``mps`` or ``auto``.
        epochs: judge training epochs over the train split; default None = enough
            epochs for about 600 optimizer steps (at least 3, at most 30). The TSTR
            classifier gets the same number of steps.
        judge: a judge from :func:`fit_judge` on these same ``train_x`` / ``train_y``;
            default None = fit one here with ``seed``, ``device`` and ``epochs``
            (then ignored).

    Returns:
        ``{"metrics": {name: float | int | None for name in IMAGE_METRICS},
        "details": {...}}``, JSON-safe. ``details`` holds ``baseline`` (the
        distribution metrics of the holdout itself, scored like a generated set: what
        real unseen images get), per-class accuracies, the judge (task, epochs, steps,
        holdout accuracy), feature-space memorization, KID's std and subset size, set
        sizes and ``seconds`` per phase.

    Raises:
        DataError: images not uint8 N×H×W×C, sizes differ between sets, too few
            images, labels not one int per image, a generated label that the train
            split does not have, or a ``judge`` fitted on other train images.
    """
    t_start = time.perf_counter()
    train_x, holdout_x, gen_x = (check_images(n, a) for n, a in
                                 (("train_x", train_x), ("holdout_x", holdout_x), ("gen_x", gen_x)))
    for name, arr in (("holdout_x", holdout_x), ("gen_x", gen_x)):
        if arr.shape[1:] != train_x.shape[1:]:
            raise DataError(f"{name}: images are {arr.shape[1:]} (H×W×C) but train_x images are "
                            f"{train_x.shape[1:]}")
    train_y = check_labels("train_y", train_y, len(train_x))
    holdout_y = check_labels("holdout_y", holdout_y, len(holdout_x))
    gen_y = check_labels("gen_y", gen_y, len(gen_x))
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

    t0 = time.perf_counter()
    f_train = judge.train_features
    f_hold, p_hold = judge.predict(holdout_x)
    f_gen, p_gen = judge.predict(gen_x)
    seconds["features"] = time.perf_counter() - t0

    # distribution metrics (features), generated and the holdout baseline
    t0 = time.perf_counter()
    i_train = _subsample(len(f_train), rng)

    def distribution(features: np.ndarray) -> dict[str, float]:
        kid, kid_std = kernel_distance(features, f_train, seed=int(rng.integers(2**31)))
        out = {"fid_domain": fid_from_features(features, f_train), "kid_domain": kid, "kid_domain_std": kid_std}
        out.update(prdc(f_train[i_train], features[_subsample(len(features), rng)]))
        return out

    dist_gen, dist_hold = distribution(f_gen), distribution(f_hold)
    seconds["distribution"] = time.perf_counter() - t0

    # memorization: pixel space (headline) and feature space
    t0 = time.perf_counter()
    flat = lambda a: a.reshape(len(a), -1)  # noqa: E731 (uint8; distances scaled below)
    i_gen, i_hold = _subsample(len(gen_x), rng), _subsample(len(holdout_x), rng)
    gen_copies, hold_copies = exact_copy_mask(gen_x, train_x), exact_copy_mask(holdout_x, train_x)
    mem_pix = _memorization(flat(gen_x[i_gen]), flat(holdout_x[i_hold]), flat(train_x),
                            gen_copies[i_gen], hold_copies[i_hold])
    for key in ("median_generated", "median_holdout"):  # L2 over H·W·C of pixels in [0, 1]
        mem_pix[key] /= 255.0
    mem_feat = _memorization(f_gen[i_gen], f_hold[i_hold], f_train, gen_copies[i_gen], hold_copies[i_hold])
    copies, holdout_copies = int(gen_copies.sum()), int(hold_copies.sum())
    seconds["memorization"] = time.perf_counter() - t0

    # accuracies
    t0 = time.perf_counter()
    gen_acc = real_acc = tstr_acc = None
    per_class: dict[str, dict[str, float | None]] = {}
    if classes is not None:
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
    seconds["accuracy"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_start

    metrics = {
        "fid_domain": dist_gen["fid_domain"], "kid_domain": dist_gen["kid_domain"],
        "generated_class_accuracy": gen_acc, "tstr_accuracy": tstr_acc, "real_accuracy": real_acc,
        "precision": dist_gen["precision"], "recall": dist_gen["recall"],
        "density": dist_gen["density"], "coverage": dist_gen["coverage"],
        "memorization_ratio": mem_pix["ratio"], "memorization_share": mem_pix["share"],
        "exact_copies": copies, "exact_copy_rate": copies / len(gen_x),
    }
    details = {
        "baseline": {**{k: _num(v) for k, v in dist_hold.items()},
                     "exact_copies": holdout_copies, "n": len(holdout_x)},
        "kid_domain_std": _num(dist_gen["kid_domain_std"]),
        "kid_subset_size": min(KID_SUBSET_SIZE, len(gen_x), len(train_x)),
        "kid_subsets": KID_SUBSETS,
        "prdc_k": PRDC_K,
        "per_class_accuracy": per_class,
        "chance_accuracy": 1.0 / len(classes) if classes is not None else None,
        "judge": {"task": judge.task, "classes": None if classes is None else [int(c) for c in classes],
                  "epochs": judge.epochs, "steps": judge.steps, "batch_size": BATCH_SIZE,
                  "feature_dim": FEATURE_DIM, "feature_scale": judge.scale, "holdout_accuracy": real_acc,
                  "device": judge.device, "seed": judge.seed},
        "memorization": {"pixel": {k: _num(v) for k, v in mem_pix.items()},
                         "feature": {k: _num(v) for k, v in mem_feat.items()}},
        "n": {"train": len(train_x), "holdout": len(holdout_x), "generated": len(gen_x)},
        "image_shape": list(train_x.shape[1:]),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }
    return {"metrics": {k: (v if isinstance(v, int) else _num(v)) for k, v in metrics.items()},
            "details": details}


_DESCRIPTIONS = {
    "fid_domain": "Fréchet distance in the judge's features (lower is better; not Inception FID)",
    "kid_domain": "kernel distance, unbiased MMD² (≈ 0 for a real draw)",
    "generated_class_accuracy": "judge says the image is of the class it was generated for",
    "tstr_accuracy": "classifier trained on generated images, accuracy on the real holdout",
    "real_accuracy": "classifier trained on real train images, accuracy on the real holdout",
    "precision": "generated images inside the real manifold (fidelity)",
    "recall": "real images inside the generated manifold (diversity)",
    "density": "k-NN density of generated images in the real manifold (≈ 1 for a real draw)",
    "coverage": "real neighbourhoods that hold a generated image",
    "memorization_ratio": "median NN distance to train, generated / holdout (≈ 1 fresh, 0 copies)",
    "memorization_share": "generated closer to train than 1% of holdout images are (≈ 0.01)",
    "exact_copies": "generated images identical to a train image",
    "exact_copy_rate": "share of generated images identical to a train image",
}


def image_report_html_section(report: dict[str, Any], grid_png: bytes | None = None,
                              title: str = "Generated images") -> str:
    """An HTML fragment: the metrics of :func:`image_report` beside the holdout baseline,
    and an optional sample grid (PNG bytes, inlined as base64)."""
    baseline = report.get("details", {}).get("baseline", {})

    def fmt(value: Any) -> str:
        if value is None:
            return "–"
        return str(value) if isinstance(value, int) else f"{value:.4g}"

    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{fmt(value)}</td><td>{fmt(baseline.get(name))}</td>"
        f"<td>{html.escape(_DESCRIPTIONS.get(name, ''))}</td></tr>"
        for name, value in report["metrics"].items())
    parts = [f"<section><h2>{html.escape(title)}</h2>",
             "<table><tr><th>metric</th><th>generated</th><th>holdout (real)</th><th>meaning</th></tr>",
             rows, "</table>"]
    if grid_png is not None:
        parts.append(f'<img alt="sample grid" src="data:image/png;base64,{base64.b64encode(grid_png).decode()}">')
    parts.append("</section>")
    return "\n".join(parts)
