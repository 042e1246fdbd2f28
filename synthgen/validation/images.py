"""Offline evaluation of generated images with a small domain classifier.

Nothing is downloaded: instead of Inception, a small CNN (:class:`SmallCNN`) is trained
on the real train split (seeded, CPU-friendly: ~600 Adam steps by default, measured at
12–19 s on the 1437 8×8 digits and 73 s on 5000 32×32 RGB images with one thread of a
busy 2-core machine; a report trains a second such network for TSTR). It is the
*judge*: it classifies generated images and its penultimate layer (``FEATURE_DIM`` =
64 units, after ReLU) is the feature space of the distribution metrics — the "Fréchet LeNet distance" idea for MNIST-like data.
Features are divided by one scalar, the RMS of the train features, so that KID's
kernel sees ``x·y / d`` of order 1 (FID is in the same units). Without labels (or
with a single class) the judge learns to tell which of four rotations (square images;
flips otherwise) was applied to a train image, a label-free task whose features still
describe shapes; the accuracy metrics are then ``None``. :func:`fit_judge` fits a judge
once for several reports (checkpoints, models), which makes them comparable.

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
import hashlib
import html
import io
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from synthgen.errors import DataError

IMAGE_METRICS = (
    "fid_domain", "kid_domain", "generated_class_accuracy", "tstr_accuracy", "real_accuracy",
    "precision", "recall", "density", "coverage",
    "memorization_ratio", "memorization_share", "exact_copies", "exact_copy_rate",
)  # fmt: skip
FEATURE_DIM = 64  # width of the judge's penultimate layer (features for FID/KID/PRDC)
KID_SUBSETS = 100  # KID: number of random subsets averaged (as torch-fidelity / torchmetrics)
KID_SUBSET_SIZE = 1000  # KID: images per side and subset, lowered to the smaller set
KID_DEGREE = 3  # KID: degree of the polynomial kernel (x.y / d + 1) ** degree
PRDC_K = 5  # precision/recall/density/coverage: k of the k-NN balls (Naeem et al.)
MAX_POINTS = 5000  # PRDC and nearest-neighbour queries: at most this many images per set
TARGET_STEPS = 600  # judge training: optimizer steps aimed at when epochs is None
BATCH_SIZE = 64  # judge training batch size
LEARNING_RATE = 1e-3  # judge training: Adam learning rate
_KID_PRECOMPUTE = 4000  # KID: up to this many rows in all, whole kernel matrices are computed once
FID_EPS = 1e-6  # added to the covariance diagonals when their product has no finite root


# -- distances (numpy, scipy; torch on CPU for the products) ----------------------------
def _gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(features, dtype=np.float64)
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = FID_EPS) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``|mu1 - mu2|² + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^½)`` with
    ``scipy.linalg.sqrtm``. As in pytorch-fid: when the product's root is not finite
    or scipy warns that the product is singular (near-singular covariances: fewer
    images than features, dead ReLU units), ``eps`` (default 1e-6) is added to both
    diagonals; the tiny imaginary part that rounding leaves is dropped. The result is clipped at 0 (rounding can give -1e-12 for equal inputs).
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    diff = mu1 - mu2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
    if caught or not np.isfinite(covmean).all():
        offset = np.eye(len(sigma1)) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    return max(float(value), 0.0)


def fid_from_features(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance of Gaussians fitted to two (n, d) feature sets (n ≥ 2 each)."""
    return frechet_distance(*_gaussian(features_a), *_gaussian(features_b))


def _kernel(a: torch.Tensor, b: torch.Tensor, degree: int) -> torch.Tensor:
    return (a @ b.T / a.shape[1] + 1.0).pow_(degree)


def _mmd2_unbiased(kxx: torch.Tensor, kyy: torch.Tensor, kxy: torch.Tensor) -> float:
    """Unbiased MMD² from the three kernel matrices of two samples."""
    m, n = len(kxx), len(kyy)
    return float((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
                 + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def _mmd2_masked(kaa: torch.Tensor, kbb: torch.Tensor, kab: torch.Tensor, wa: torch.Tensor,
                 wb: torch.Tensor) -> float:
    """:func:`_mmd2_unbiased` of the subsets marked by 0/1 vectors, from whole kernels
    (sums of a subset's block are ``w @ K @ w``: no gathering)."""
    m, n = float(wa.sum()), float(wb.sum())
    saa = wa @ kaa @ wa - (kaa.diagonal() * wa).sum()
    sbb = wb @ kbb @ wb - (kbb.diagonal() * wb).sum()
    return float(saa / (m * (m - 1)) + sbb / (n * (n - 1)) - 2.0 * (wa @ kab @ wb) / (m * n))


def kernel_distance(features_a: np.ndarray, features_b: np.ndarray, *, subsets: int = KID_SUBSETS,
                    subset_size: int = KID_SUBSET_SIZE, degree: int = KID_DEGREE,
                    seed: int = 0) -> tuple[float, float]:
    """KID: unbiased MMD² with the kernel ``(x·y / d + 1) ** degree``, over subsets.

    Args:
        features_a, features_b: (n, d) and (m, d) feature sets, at least 2 rows each.
        subsets: random subsets averaged; default 100.
        subset_size: rows per side and subset; default 1000, lowered to
            ``min(n, m)`` (a subset of the whole set is the whole set).
        degree: polynomial degree; default 3.
        seed: seed of the subset draws; default 0.

    Returns:
        ``(mean, std)`` over subsets.
    """
    a = torch.from_numpy(np.asarray(features_a, dtype=np.float64))
    b = torch.from_numpy(np.asarray(features_b, dtype=np.float64))
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise DataError(f"KID needs at least 2 feature rows per set, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    whole = len(a) + len(b) <= _KID_PRECOMPUTE  # small sets: kernels once, subsets by indexing
    if whole:
        kaa, kbb, kab = _kernel(a, a, degree), _kernel(b, b, degree), _kernel(a, b, degree)
    values = []
    for _ in range(subsets):
        i = torch.from_numpy(rng.choice(len(a), size, replace=False))
        j = torch.from_numpy(rng.choice(len(b), size, replace=False))
        if whole:
            wa, wb = torch.zeros(len(a), dtype=a.dtype), torch.zeros(len(b), dtype=b.dtype)
            wa[i], wb[j] = 1.0, 1.0
            values.append(_mmd2_masked(kaa, kbb, kab, wa, wb))
        else:
            x, y = a[i], b[j]
            values.append(_mmd2_unbiased(_kernel(x, x, degree), _kernel(y, y, degree), _kernel(x, y, degree)))
    return float(np.mean(values)), float(np.std(values))


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (float64) between the rows of a and b (torch, so that
    ``torch.set_num_threads`` bounds the threads)."""
    ta = torch.from_numpy(np.asarray(a, dtype=np.float64))
    tb = torch.from_numpy(np.asarray(b, dtype=np.float64))
    return torch.cdist(ta, tb).numpy()


def prdc(real: np.ndarray, fake: np.ndarray, k: int = PRDC_K) -> dict[str, float]:
    """Precision, recall, density and coverage of Naeem et al. (2020).

    Each real point's ball has the radius of its k-th nearest real neighbour (itself
    excluded); each fake point's ball likewise among fakes (for recall).

    Args:
        real: (n, d) real features, n > k.
        fake: (m, d) generated features, m > k.
        k: neighbours defining the balls; default 5.

    Returns:
        ``{"precision", "recall", "density", "coverage"}``.
    """
    if len(real) <= k or len(fake) <= k:
        raise DataError(f"precision/recall need more than k={k} images per set, "
                        f"got {len(real)} real and {len(fake)} generated")
    real_radii = np.partition(_pairwise(real, real), k, axis=1)[:, k]
    fake_radii = np.partition(_pairwise(fake, fake), k, axis=1)[:, k]
    d_rf = _pairwise(real, fake)  # (n_real, n_fake)
    inside = d_rf < real_radii[:, None]
    return {
        "precision": float(inside.any(axis=0).mean()),
        "recall": float((d_rf < fake_radii[None, :]).any(axis=1).mean()),
        "density": float(inside.sum(axis=0).mean() / k),
        "coverage": float((d_rf.min(axis=1) < real_radii).mean()),
    }


def nearest_distances(query: np.ndarray, reference: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Euclidean distance from each query row to its nearest reference row.

    Rows may be any numeric dtype (e.g. flattened uint8 images); blocks of ``chunk``
    rows are converted to float64 on the fly: ``torch.cdist``'s matrix-product form
    leaves ~0.02 instead of 0 between identical 3072-d rows in float32, ~1e-6 in float64.
    """
    out = np.full(len(query), np.inf)
    for r0 in range(0, len(reference), chunk):
        ref = torch.from_numpy(np.asarray(reference[r0:r0 + chunk], dtype=np.float64))
        for q0 in range(0, len(query), chunk):
            q = torch.from_numpy(np.asarray(query[q0:q0 + chunk], dtype=np.float64))
            out[q0:q0 + chunk] = np.minimum(out[q0:q0 + chunk], torch.cdist(q, ref).min(dim=1).values.numpy())
    return out


def exact_copy_mask(query: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """True for each query image byte-identical to some reference image (same shape)."""
    seen = {row.tobytes() for row in reference.reshape(len(reference), -1)}
    return np.array([row.tobytes() in seen for row in query.reshape(len(query), -1)], dtype=bool)


# -- the judge ---------------------------------------------------------------------------
class SmallCNN(nn.Module):
    """The judge: three 3×3 conv layers (16, 32, 64 channels), a 64-unit feature layer.

    Each conv is followed by ReLU and a 2×2 max-pool while the image is still 8 px or
    more on its shorter side, then an adaptive average pool to 4×4, ``linear(1024→64)
    → ReLU`` (the features) and ``linear(64→classes)``. An 8×8 image is pooled once,
    a 32×32 one three times; about 93k weights. Weights are drawn from ``generator``
    (PyTorch's default schemes), never from the global RNG.

    Args:
        channels: image channels (1 or 3).
        classes: output classes.
        generator: a seeded ``torch.Generator`` for the initial weights.
    """

    def __init__(self, channels: int, classes: int, generator: torch.Generator):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(channels, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1),
                                    nn.Conv2d(32, 64, 3, padding=1)])
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(64 * 16, FEATURE_DIM), nn.ReLU())
        self.head = nn.Linear(FEATURE_DIM, classes)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                    bound = 1.0 / math.sqrt(module.weight[0].numel())
                    module.bias.uniform_(-bound, bound, generator=generator)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images in [-1, 1] -> (N, 64) features."""
        for conv in self.convs:
            x = nn.functional.relu(conv(x))
            if min(x.shape[-2:]) >= 8:
                x = nn.functional.max_pool2d(x, 2)
        return self.features(self.pool(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def _to_tensor(images: np.ndarray, device: str):
    """uint8 N×H×W×C -> float32 N×C×H×W in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    return (x.to(device=device, dtype=torch.float32) / 127.5 - 1.0)


def _transformations(x, square: bool):
    """The label-free task: 4 rotations (square images) or 4 flips, with their index."""
    if square:
        views = [torch.rot90(x, k, dims=(2, 3)) for k in range(4)]
    else:
        views = [x, x.flip(3), x.flip(2), x.flip(2).flip(3)]
    y = torch.arange(4, device=x.device).repeat_interleave(len(x))
    return torch.cat(views), y


def train_classifier(x, y, classes: int, *, steps: int, seed: int, batch_size: int = BATCH_SIZE,
                     class_weight=None):
    """Train a fresh :class:`SmallCNN` for ``steps`` Adam steps (lr 1e-3) on (x, y).

    Args:
        x: (N, C, H, W) float tensor in [-1, 1], on the training device.
        y: (N,) long tensor of class indices on the same device.
        classes: number of classes.
        steps: optimizer steps; batches are drawn epoch by epoch from seeded permutations.
        seed: seeds the initial weights (``seed``) and the batch order (``seed + 1``).
        batch_size: default 64.
        class_weight: optional (classes,) float tensor weighting the cross-entropy per class
            (e.g. inverse class frequencies); default None (unweighted).

    Returns:
        The trained network, in eval mode.
    """
    net = SmallCNN(x.shape[1], classes, torch.Generator().manual_seed(seed)).to(x.device)
    order_gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    net.train()
    perm, pos = torch.randperm(len(x), generator=order_gen), 0
    for _ in range(steps):
        if pos >= len(perm):
            perm, pos = torch.randperm(len(x), generator=order_gen), 0
        idx = perm[pos:pos + batch_size].to(x.device)
        pos += batch_size
        loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx], weight=class_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


def _predict(net, x, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, 64) float64, predicted class indices (N,)) of a trained judge."""
    feats, preds = [], []
    with torch.no_grad():
        for start in range(0, len(x), chunk):
            f = net.embed(x[start:start + chunk])
            feats.append(f.cpu().double().numpy())
            preds.append(net.head(f).argmax(1).cpu().numpy())
    return np.concatenate(feats), np.concatenate(preds)


# -- inputs ------------------------------------------------------------------------------
def _check_images(name: str, images: Any) -> np.ndarray:
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise DataError(f"{name}: expected uint8 images (N×H×W×C), got dtype {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
        raise DataError(f"{name}: expected images shaped N×H×W×C with C = 1 or 3, got {arr.shape}")
    if len(arr) < PRDC_K + 1:
        raise DataError(f"{name}: needs at least {PRDC_K + 1} images, got {len(arr)}")
    return arr


def _check_labels(name: str, labels: Any, n: int) -> np.ndarray | None:
    if labels is None:
        return None
    arr = np.asarray(labels)
    if arr.ndim != 1 or len(arr) != n:
        raise DataError(f"{name}: expected {n} labels (one per image), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{name}: expected integer class labels, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _steps_for(n: int, epochs: int | None) -> tuple[int, int]:
    per_epoch = math.ceil(n / BATCH_SIZE)
    if epochs is None:
        epochs = min(30, max(3, math.ceil(TARGET_STEPS / per_epoch)))
    if epochs < 1:
        raise DataError(f"epochs must be at least 1, got {epochs}")
    return epochs, epochs * per_epoch


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
@dataclass
class Judge:
    """A trained :class:`SmallCNN` and what it was fitted on (see :func:`fit_judge`).

    Attributes:
        net: the network, in eval mode, on ``device``.
        task: ``classes`` (trained on the labels), ``rotations`` or ``flips``.
        classes: the sorted train labels (``classes`` task) or None.
        epochs, steps: training epochs over the (transformed) train split and Adam steps.
        seed: the seed it was trained with.
        device: where ``net`` lives.
        scale: features are divided by this one scalar (the RMS of the train
            features), so that ``x·y / d`` in KID's kernel is of order 1.
        train_features: (n_train, 64) scaled features of the train images (float64).
        train_digest: sha256 of the train images it was fitted on.
        seconds: training time.
    """

    net: SmallCNN
    task: str
    classes: np.ndarray | None
    epochs: int
    steps: int
    seed: int
    device: str
    scale: float
    train_features: np.ndarray
    train_digest: str
    seconds: float

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scaled features (N, 64) and predicted class indices (N,) of uint8 images."""
        features, predicted = _predict(self.net, _to_tensor(images, self.device))
        return features / self.scale, predicted


def _digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest() + str(images.shape)


def fit_judge(train_x: np.ndarray, train_y: np.ndarray | None = None, *, seed: int = 0,
              device: str = "cpu", epochs: int | None = None) -> Judge:
    """Train the judge on the real train split (what :func:`image_report` does first).

    Fit it once and pass it to several :func:`image_report` calls (checkpoints, seeds,
    models): their feature-space metrics are then comparable, and cheaper.

    Args:
        train_x: uint8 images N×H×W×C (C = 1 or 3; N×H×W is read as C = 1).
        train_y: int class labels, one per image, or None (then, as with a single
            class, the judge learns which of 4 rotations — flips for non-square
            images — was applied).
        seed: seeds the initial weights and the batch order; default 0.
        device: ``cpu`` (default), ``cuda``, ``mps`` or ``auto``.
        epochs: epochs over the train split; default None = enough for about 600 Adam
            steps of 64 images (at least 3, at most 30 epochs).

    Returns:
        The fitted :class:`Judge`.
    """
    from synthgen.training.device import resolve_device

    t0 = time.perf_counter()
    train_x = _check_images("train_x", train_x)
    train_y = _check_labels("train_y", train_y, len(train_x))
    classes = np.unique(train_y) if train_y is not None else np.array([], dtype=np.int64)
    device = resolve_device(device)
    x = _to_tensor(train_x, device)
    if len(classes) >= 2:
        fit_x, fit_y = x, torch.from_numpy(np.searchsorted(classes, train_y)).to(device)
        n_out, task = len(classes), "classes"
    else:
        square = train_x.shape[1] == train_x.shape[2]
        fit_x, fit_y = _transformations(x, square)
        n_out, task = 4, "rotations" if square else "flips"
    epochs, steps = _steps_for(len(fit_x), epochs)
    net = train_classifier(fit_x, fit_y, n_out, steps=steps, seed=seed)
    features, _ = _predict(net, x)
    scale = float(np.sqrt(np.mean(features**2))) or 1.0
    return Judge(net=net, task=task, classes=classes if task == "classes" else None, epochs=epochs,
                 steps=steps, seed=seed, device=device, scale=scale, train_features=features / scale,
                 train_digest=_digest(train_x), seconds=time.perf_counter() - t0)


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
    train_x, holdout_x, gen_x = (_check_images(n, a) for n, a in
                                 (("train_x", train_x), ("holdout_x", holdout_x), ("gen_x", gen_x)))
    for name, arr in (("holdout_x", holdout_x), ("gen_x", gen_x)):
        if arr.shape[1:] != train_x.shape[1:]:
            raise DataError(f"{name}: images are {arr.shape[1:]} (H×W×C) but train_x images are "
                            f"{train_x.shape[1:]}")
    train_y = _check_labels("train_y", train_y, len(train_x))
    holdout_y = _check_labels("holdout_y", holdout_y, len(holdout_x))
    gen_y = _check_labels("gen_y", gen_y, len(gen_x))
    if judge is None:
        judge = fit_judge(train_x, train_y, seed=seed, device=device, epochs=epochs)
        judge_seconds = judge.seconds
    else:
        if judge.train_digest != _digest(train_x):
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
            tstr = train_classifier(_to_tensor(gen_x, judge.device), torch.from_numpy(gen_idx).to(judge.device),
                                    len(classes), steps=judge.steps, seed=seed + 10)
            _, p_tstr = _predict(tstr, _to_tensor(holdout_x, judge.device))
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


# -- pictures ----------------------------------------------------------------------------
def sample_grid(images: np.ndarray, labels: Sequence[int] | np.ndarray | None = None,
                path: str | Path | None = None, nrow: int = 10, *, min_cell: int = 32) -> bytes:
    """A PNG grid of images, one row per class when labels are given.

    Args:
        images: uint8 N×H×W×C (C = 1 or 3) or N×H×W.
        labels: int class per image, or None. With labels, each row shows the first
            ``nrow`` images of one class (classes sorted), the class written at the left.
        path: where to write the PNG too (atomically); default None (only returned).
        nrow: images per row; default 10.
        min_cell: images are enlarged (nearest neighbour, integer factor) to at least
            this many pixels on their longer side; default 32.

    Returns:
        The PNG file's bytes (deterministic for the same input).
    """
    from PIL import Image, ImageDraw

    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or len(arr) == 0:
        raise DataError(f"sample_grid: expected a non-empty uint8 N×H×W(×C) array, got {arr.dtype} {arr.shape}")
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if nrow < 1:
        raise DataError(f"sample_grid: nrow must be at least 1, got {nrow}")
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape != (len(arr),):
            raise DataError(f"sample_grid: expected {len(arr)} labels, got shape {lab.shape}")
        rows = [(str(int(c)), arr[lab == c][:nrow]) for c in np.unique(lab)]
    else:
        rows = [("", arr[i:i + nrow]) for i in range(0, len(arr), nrow)]
    h, w = arr.shape[1:3]
    scale = max(1, math.ceil(min_cell / max(h, w)))
    pad = 2
    cell_h, cell_w = h * scale + pad, w * scale + pad
    margin = 8 + 7 * max(len(name) for name, _ in rows) if labels is not None else 0
    mode = "L" if arr.ndim == 3 else "RGB"
    grid = Image.new(mode, (margin + pad + nrow * cell_w, pad + len(rows) * cell_h),
                     color=255 if mode == "L" else (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for r, (name, row) in enumerate(rows):
        top = pad + r * cell_h
        if name:
            draw.text((4, top + cell_h // 2 - 6), name, fill=0 if mode == "L" else (0, 0, 0))
        for c, img in enumerate(row):
            tile = Image.fromarray(np.ascontiguousarray(img), mode=mode)
            grid.paste(tile.resize((w * scale, h * scale), Image.NEAREST), (margin + pad + c * cell_w, top))
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    data = buf.getvalue()
    if path is not None:
        from synthgen.io import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    return data


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
