"""The judge: a small CNN trained on the real images, whose features the metrics use.

:class:`SmallCNN` (three conv layers, a 64-unit feature layer), its seeded training loop
:func:`train_classifier`, :func:`predict` (features and predicted classes),
:func:`to_tensor` (uint8 images to the network's input), :func:`steps_for` (epochs and
optimizer steps of the default recipe), the input checks shared with the report, and
:func:`fit_judge`, which trains a :class:`Judge` on the real train split (its classes, or
without labels which of four rotations / flips was applied). Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from synthgen.errors import DataError
from synthgen.validation.images.metrics import PRDC_K

FEATURE_DIM = 64  # width of the judge's penultimate layer (features for FID/KID/PRDC)
TARGET_STEPS = 600  # judge training: optimizer steps aimed at when epochs is None
BATCH_SIZE = 64  # judge training batch size
LEARNING_RATE = 1e-3  # judge training: Adam learning rate


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


def to_tensor(images: np.ndarray, device: str):
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


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (None: unchanged); the previous
    number is restored afterwards."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def train_classifier(x, y, classes: int, *, steps: int, seed: int, batch_size: int = BATCH_SIZE,
                     class_weight=None):
    """Train a fresh :class:`SmallCNN` for ``steps`` Adam steps (lr 1e-3) on (x, y).

    On CPU the loop runs on one torch thread (:func:`torch_threads`): the convolutions are
    small, and on a shared 2-core machine two threads made a whole image validation 15×
    slower (190 s against 12 s for 400 train / 100 holdout / 400 generated images at 32 px).

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
    with torch_threads(1 if x.device.type == "cpu" else None):
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


def predict(net, x, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, 64) float64, predicted class indices (N,)) of a trained judge."""
    feats, preds = [], []
    with torch.no_grad():
        for start in range(0, len(x), chunk):
            f = net.embed(x[start:start + chunk])
            feats.append(f.cpu().double().numpy())
            preds.append(net.head(f).argmax(1).cpu().numpy())
    return np.concatenate(feats), np.concatenate(preds)


# -- inputs ------------------------------------------------------------------------------
def check_images(name: str, images: Any) -> np.ndarray:
    """uint8 N×H×W×C images (N×H×W gets C = 1), at least ``PRDC_K + 1`` of them; DataError otherwise."""
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


def check_labels(name: str, labels: Any, n: int) -> np.ndarray | None:
    """None, or ``n`` integer class labels as int64; DataError otherwise."""
    if labels is None:
        return None
    arr = np.asarray(labels)
    if arr.ndim != 1 or len(arr) != n:
        raise DataError(f"{name}: expected {n} labels (one per image), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{name}: expected integer class labels, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def steps_for(n: int, epochs: int | None) -> tuple[int, int]:
    """``(epochs, optimizer steps)`` for ``n`` training images in batches of ``BATCH_SIZE``;
    ``epochs`` None = enough for about ``TARGET_STEPS`` steps (3 to 30 epochs)."""
    per_epoch = math.ceil(n / BATCH_SIZE)
    if epochs is None:
        epochs = min(30, max(3, math.ceil(TARGET_STEPS / per_epoch)))
    if epochs < 1:
        raise DataError(f"epochs must be at least 1, got {epochs}")
    return epochs, epochs * per_epoch


# -- the fitted judge --------------------------------------------------------------------
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
        features, predicted = predict(self.net, to_tensor(images, self.device))
        return features / self.scale, predicted


def images_digest(images: np.ndarray) -> str:
    """sha256 of the image bytes, plus the shape: what :attr:`Judge.train_digest` holds."""
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest() + str(images.shape)


def fit_judge(train_x: np.ndarray, train_y: np.ndarray | None = None, *, seed: int = 0,
              device: str = "cpu", epochs: int | None = None) -> Judge:
    """Train the judge on the real train split (what :func:`~synthgen.validation.images.report.image_report` does first).

    Fit it once and pass it to several
    :func:`~synthgen.validation.images.report.image_report` calls (checkpoints, seeds,
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
    train_x = check_images("train_x", train_x)
    train_y = check_labels("train_y", train_y, len(train_x))
    classes = np.unique(train_y) if train_y is not None else np.array([], dtype=np.int64)
    device = resolve_device(device)
    x = to_tensor(train_x, device)
    if len(classes) >= 2:
        fit_x, fit_y = x, torch.from_numpy(np.searchsorted(classes, train_y)).to(device)
        n_out, task = len(classes), "classes"
    else:
        square = train_x.shape[1] == train_x.shape[2]
        fit_x, fit_y = _transformations(x, square)
        n_out, task = 4, "rotations" if square else "flips"
    epochs, steps = steps_for(len(fit_x), epochs)
    net = train_classifier(fit_x, fit_y, n_out, steps=steps, seed=seed)
    features, _ = predict(net, x)
    scale = float(np.sqrt(np.mean(features**2))) or 1.0
    return Judge(net=net, task=task, classes=classes if task == "classes" else None, epochs=epochs,
                 steps=steps, seed=seed, device=device, scale=scale, train_features=features / scale,
                 train_digest=images_digest(train_x), seconds=time.perf_counter() - t0)
