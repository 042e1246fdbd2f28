"""Image detection: can a classifier tell the generated images from real unseen ones?

The image analogue of the tables' ``detection_auc`` (:mod:`synthgen.validation.detection`),
a classifier two-sample test. The real side is always the **holdout** (never trained
on): against the train split, a generator that copies its training images would look
perfectly real. Sides are balanced first: within each class (labels given on both sides)
as many images of each side as the smaller side has of that class, without labels as
many as the smaller set, at most :data:`MAX_PER_SIDE` per side; the larger side is
subsampled (seeded). Two models are scored by stratified :data:`FOLDS`-fold
cross-validated ROC AUC (mean over folds):

* ``cnn``: :class:`DetectorCNN`, a small CNN (three 3×3 convs of 16, 32, 32 channels,
  the first two with stride 2, global average and max pooling, one logit) trained from
  scratch per fold for ``min(CNN_MAX_STEPS, CNN_EPOCHS epochs)`` Adam steps of
  :data:`CNN_BATCH` images (a seeded ``torch.Generator`` draws the weights and the
  batches: deterministic on CPU). Images over :data:`CNN_MAX_SIZE` px are
  average-pooled down to it first. It sees texture and artefacts.
* ``features``: a logistic regression (standardised inputs, ``C`` = :data:`LOGISTIC_C`)
  on :func:`~synthgen.validation.images.features.pixel_hog_features` (downsampled
  pixels, a HOG gradient-orientation histogram, intensity and gradient histograms).

``image_detection_auc`` is the larger of the two mean AUCs, floored at 0.5
(0.5 = indistinguishable, 1 = always told apart; an AUC under 0.5 is chance, as in
the tables' detection). Per class, each model's out-of-fold scores of the images of
that class give its AUC within the class (the pooled model, so that small classes
still get a value); the class's value is again the larger, floored at 0.5, and None
when either side has fewer than :data:`MIN_CLASS_IMAGES` images of it after balancing.

Real images against real images the generator never saw score 0.50-0.57 with 100 or more
per side, up to 0.68 with 40 (cross-validated AUCs of small sets are noisy); noise,
textures and today's 32 px GAN runs score 0.99-1.0 (measurements beside the default
ceiling, :data:`synthgen.stages.images.IMAGE_MAX`).
Models are fitted on one thread (``threadpoolctl``; the CNN on CPU with one torch thread),
as the tables' detection: on a small, shared machine more threads made them far slower.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from synthgen.validation.images.features import pixel_hog_features
from synthgen.validation.images.judge import torch_threads

FOLDS = 5  # cross-validation folds (stratified on the side)
MAX_PER_SIDE = 1000  # images per side at most (the larger side is subsampled to the smaller anyway)
MIN_PER_SIDE = 10  # fewer balanced images per side: no detection (None)
#: Below this many images per side the test has too little power to call a set indistinguishable: its
#: AUC is still reported, and the report lists it among the metric failures (bench/ada_curve.py: near-copies
#: of 48 train images scored 0.50 against 12 holdout images per side).
TRUSTED_PER_SIDE = 30
MIN_CLASS_IMAGES = 10  # per side within a class, for a per-class AUC
CNN_EPOCHS = 20  # detector CNN: epochs over a fold's training images ...
CNN_MAX_STEPS = 120  # ... but at most this many Adam steps per fold
CNN_BATCH = 32  # detector CNN: batch size
CNN_LR = 2e-3  # detector CNN: Adam learning rate
CNN_MAX_SIZE = 32  # detector CNN: larger images are average-pooled to at most this many px a side
LOGISTIC_C = 0.1  # feature model: inverse L2 strength of the logistic regression


class DetectorCNN(nn.Module):
    """The detection CNN: 3×3 convs C→16 (stride 2), 16→32 (stride 2), 32→32, each with
    ReLU, then global average and max pooling (64 values) and one logit. Weights from
    ``generator`` (PyTorch's default schemes), never from the global RNG; ~15k weights."""

    def __init__(self, channels: int, generator: torch.Generator):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(channels, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(64, 1)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    fan_in = module.weight[0].numel()
                    bound = 1.0 / fan_in**0.5
                    module.weight.uniform_(-bound, bound, generator=generator)
                    module.bias.uniform_(-bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(x)
        return self.head(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)).squeeze(1)


def _cnn_input(images: np.ndarray, device: str) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device=device, dtype=torch.float32)
    x = x / 127.5 - 1.0
    if max(x.shape[-2:]) > CNN_MAX_SIZE:
        factor = -(-max(x.shape[-2:]) // CNN_MAX_SIZE)
        x = nn.functional.avg_pool2d(x, factor, ceil_mode=True)
    return x


def _cnn_scores(x: torch.Tensor, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
    """Train a fresh :class:`DetectorCNN` on ``x[train]`` and score ``x[test]``."""
    net = DetectorCNN(x.shape[1], torch.Generator().manual_seed(seed)).to(x.device)
    order = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(net.parameters(), lr=CNN_LR, fused=x.device.type in ("cpu", "cuda"))
    target = torch.from_numpy(y.astype(np.float32)).to(x.device)
    per_epoch = -(-len(train) // CNN_BATCH)
    steps = min(CNN_MAX_STEPS, CNN_EPOCHS * per_epoch)
    idx_train = torch.from_numpy(train)
    perm, pos = idx_train[torch.randperm(len(train), generator=order)], 0
    net.train()
    for _ in range(steps):
        if pos >= len(perm):
            perm, pos = idx_train[torch.randperm(len(train), generator=order)], 0
        batch = perm[pos:pos + CNN_BATCH].to(x.device)
        pos += CNN_BATCH
        loss = nn.functional.binary_cross_entropy_with_logits(net(x[batch]), target[batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        return net(x[torch.from_numpy(test).to(x.device)]).double().cpu().numpy()


def _balanced(real_y: np.ndarray | None, gen_y: np.ndarray | None, n_real: int, n_gen: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices into the real and the generated set: equal counts per class (or overall)."""
    if real_y is None or gen_y is None:
        n = min(n_real, n_gen, MAX_PER_SIDE)
        return np.sort(rng.choice(n_real, n, replace=False)), np.sort(rng.choice(n_gen, n, replace=False))
    classes = np.intersect1d(real_y, gen_y)
    counts = {c: min(int((real_y == c).sum()), int((gen_y == c).sum())) for c in classes}
    total = sum(counts.values())
    if total > MAX_PER_SIDE:  # shrink every class alike
        counts = {c: int(n * MAX_PER_SIDE // total) for c, n in counts.items()}
    picks_r = [rng.choice(np.flatnonzero(real_y == c), n, replace=False) for c, n in counts.items()]
    picks_g = [rng.choice(np.flatnonzero(gen_y == c), n, replace=False) for c, n in counts.items()]
    empty = np.array([], dtype=np.int64)
    return np.sort(np.concatenate([*picks_r, empty])), np.sort(np.concatenate([*picks_g, empty]))


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def image_detection(real_x: np.ndarray, real_y: np.ndarray | None, gen_x: np.ndarray, gen_y: np.ndarray | None,
                    *, seed: int = 0, device: str = "cpu", folds: int = FOLDS) -> dict[str, Any]:
    """Cross-validated real-holdout-vs-generated classifier AUCs (see the module docstring).

    Args:
        real_x: the real **holdout** images, uint8 N×H×W×C (never the train split).
        real_y, gen_y: int class labels or None (then no per-class values).
        gen_x: the generated images, uint8, same H×W×C.
        seed: seeds the balancing subsample, the folds and the CNNs (``seed + fold``);
            default 0. Same inputs and seed give the same result on CPU.
        device: where the CNN trains; default ``cpu``.
        folds: cross-validation folds; default 5 (fewer when a side is smaller).

    Returns:
        ``{"image_detection_auc", "per_class", "models": {"cnn", "features"}, "n_per_side",
        "folds", "cnn_steps", "seconds"}``; ``image_detection_auc`` is None (and so are
        the rest) when fewer than :data:`MIN_PER_SIDE` images per side remain after
        balancing (e.g. no class in common).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    labelled = real_y is not None and gen_y is not None
    i_real, i_gen = _balanced(real_y, gen_y, len(real_x), len(gen_x), rng)
    n = len(i_real)
    empty = {"image_detection_auc": None, "per_class": {}, "models": {}, "n_per_side": n, "folds": None,
             "cnn_steps": None, "seconds": 0.0}
    if n < MIN_PER_SIDE:
        return empty
    images = np.concatenate([real_x[i_real], gen_x[i_gen]])
    side = np.r_[np.zeros(n, np.int64), np.ones(n, np.int64)]
    cls = np.concatenate([real_y[i_real], gen_y[i_gen]]) if labelled else None
    k = min(folds, n)
    splits = list(StratifiedKFold(k, shuffle=True, random_state=seed).split(images, side))
    feats = pixel_hog_features(images)
    x = _cnn_input(images, device)
    oof = {"cnn": np.zeros(2 * n), "features": np.zeros(2 * n)}
    fold_aucs: dict[str, list[float]] = {"cnn": [], "features": []}
    for f, (train, test) in enumerate(splits):
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore")  # lbfgs convergence on separable folds
            model = make_pipeline(StandardScaler(), LogisticRegression(C=LOGISTIC_C, max_iter=2000))
            model.fit(feats[train], side[train])
            oof["features"][test] = model.decision_function(feats[test])
        with torch_threads(1 if x.device.type == "cpu" else None):  # tiny convolutions: see train_classifier
            oof["cnn"][test] = _cnn_scores(x, side, train, test, seed + f)
        for name in oof:
            fold_aucs[name].append(_auc(side[test], oof[name][test]))
    models = {name: {"auc": float(np.mean(v)), "fold_aucs": [round(a, 4) for a in v]} for name, v in fold_aucs.items()}
    per_class: dict[str, dict[str, Any]] = {}
    if labelled:
        for c in np.unique(cls):
            mask = cls == c
            n_c = int((mask & (side == 0)).sum())
            row: dict[str, Any] = {"auc": None, "cnn": None, "features": None, "n_per_side": n_c}
            if n_c >= MIN_CLASS_IMAGES:
                for name in oof:
                    row[name] = _auc(side[mask], oof[name][mask])
                row["auc"] = max(0.5, row["cnn"], row["features"])
            per_class[str(int(c))] = row
    per_epoch = -(-len(splits[0][0]) // CNN_BATCH)
    return {
        "image_detection_auc": max(0.5, *(m["auc"] for m in models.values())),
        "per_class": per_class,
        "models": models,
        "n_per_side": n,
        "folds": k,
        "cnn_steps": min(CNN_MAX_STEPS, CNN_EPOCHS * per_epoch),
        "seconds": round(time.perf_counter() - t0, 3),
    }
