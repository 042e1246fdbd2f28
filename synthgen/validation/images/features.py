"""Feature spaces for the image metrics that are *not* trained on the train split.

The judge (:mod:`~synthgen.validation.images.judge`) learns what separates the train
classes and nothing else, so a generator can fool every metric computed in its features.
The two spaces here learn nothing from the images they score:

* **random**: :class:`RandomCNN`, a fixed, randomly initialised (seeded, never trained)
  convolutional network; the global average of each of its four ReLU layers is
  concatenated (16 + 32 + 64 + 128 = 240 features: local texture statistics at four
  scales). Random-network features are a known, download-free baseline for FID-like
  distances; they see high-frequency artefacts the judge ignores.
* **pixel**: :func:`pixel_hog_features`, the image block-averaged to at most 8×8 per
  channel, a HOG-style gradient-orientation histogram (:func:`hog`: 4×4 cells, 9
  unsigned orientation bins, 2×2-cell blocks normalised L2-Hys, as Dalal & Triggs),
  and global histograms of intensity (16 bins) and gradient magnitude (8 bins).

Both are standardised per feature with the train split's mean and standard deviation
(:func:`standardize`; a standard deviation below a tenth of the mean one is raised to it,
so that a pixel that is always black does not weigh a thousandfold). numpy and torch on
CPU; nothing is downloaded. The detection test (:mod:`~synthgen.validation.images.detection`)
uses the pixel/HOG features too.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

RANDOM_WIDTHS = (16, 32, 64, 128)  # channels of RandomCNN's four 3×3 conv layers
PIXEL_SIZE = 8  # pixel features: images block-averaged to at most this many pixels a side
HOG_CELLS = 4  # HOG: cells per image side (cell size = image size / 4)
HOG_BINS = 9  # HOG: unsigned orientation bins over [0, π)
HOG_CLIP = 0.2  # HOG: L2-Hys clipping of the normalised block histograms
INTENSITY_BINS = 16  # pixel features: bins of the global intensity histogram
MAGNITUDE_BINS = 8  # pixel features: bins of the global gradient-magnitude histogram on [0, 1]
STD_FLOOR = 0.1  # standardize: per-feature std raised to at least this share of the mean std


class RandomCNN(nn.Module):
    """A fixed, randomly initialised CNN whose pooled activations are image features.

    Four 3×3 conv layers (:data:`RANDOM_WIDTHS` = 16, 32, 64, 128 channels), each followed
    by ReLU; a 2×2 average pool follows the first three while the image is at least 2 px
    on its shorter side. Weights are He-normal (variance 2 / fan-in) drawn from
    ``generator``, biases are 0; it is never trained. :meth:`forward` returns the spatial
    mean of every layer's activations, concatenated: (N, 240) features.

    Args:
        channels: image channels (1 or 3).
        generator: a seeded ``torch.Generator`` for the weights.
    """

    def __init__(self, channels: int, generator: torch.Generator):
        super().__init__()
        widths = (channels, *RANDOM_WIDTHS)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths[:-1], widths[1:]))
        with torch.no_grad():
            for conv in self.convs:
                fan_in = conv.weight[0].numel()
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * math.sqrt(2.0 / fan_in))
                conv.bias.zero_()
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images in [-1, 1] -> (N, 240) pooled activations."""
        pooled = []
        for i, conv in enumerate(self.convs):
            x = nn.functional.relu(conv(x))
            pooled.append(x.mean(dim=(2, 3)))
            if i < len(self.convs) - 1 and min(x.shape[-2:]) >= 2:
                x = nn.functional.avg_pool2d(x, 2)
        return torch.cat(pooled, dim=1)


def random_features(images: np.ndarray, seed: int = 0, chunk: int = 512) -> np.ndarray:
    """(N, 240) float64 features of uint8 N×H×W×C images from :class:`RandomCNN` seeded with ``seed``."""
    net = RandomCNN(images.shape[-1], torch.Generator().manual_seed(seed))
    out = []
    with torch.no_grad():
        for start in range(0, len(images), chunk):
            block = np.ascontiguousarray(images[start:start + chunk].transpose(0, 3, 1, 2))
            out.append(net(torch.from_numpy(block).float() / 127.5 - 1.0).double().numpy())
    return np.concatenate(out)


def _gradients(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel gradient magnitude and unsigned orientation in [0, π) of N×H×W×C images
    in [0, 1] (central differences, 0 at the border; of several channels the one with the
    largest magnitude, as Dalal & Triggs)."""
    gx, gy = np.zeros_like(images), np.zeros_like(images)
    gx[:, :, 1:-1] = (images[:, :, 2:] - images[:, :, :-2]) / 2
    gy[:, 1:-1] = (images[:, 2:] - images[:, :-2]) / 2
    mag = np.hypot(gx, gy)
    if images.shape[-1] > 1:
        pick = mag.argmax(axis=-1)[..., None]
        gx, gy, mag = (np.take_along_axis(a, pick, axis=-1) for a in (gx, gy, mag))
    return mag[..., 0], np.mod(np.arctan2(gy[..., 0], gx[..., 0]), np.pi)


def _block_mean(values: np.ndarray, cells: int) -> torch.Tensor:
    """N×H×W×K -> N×K×cells×cells means over a grid of (near-)equal blocks."""
    x = torch.from_numpy(np.ascontiguousarray(values.transpose(0, 3, 1, 2)))
    return nn.functional.adaptive_avg_pool2d(x, cells)


def hog(images: np.ndarray, cells: int = HOG_CELLS, bins: int = HOG_BINS) -> np.ndarray:
    """A HOG descriptor of each image: (N, (cells-1)² · 4 · bins) float64.

    Gradient orientations (unsigned, ``bins`` bins over [0, π), each vote split linearly
    between the two nearest bins, weighted by the gradient magnitude) are summed over a
    ``cells`` × ``cells`` grid of cells; each 2×2 block of cells (stride one cell) is
    L2-normalised, clipped at :data:`HOG_CLIP` and normalised again (L2-Hys).

    Args:
        images: uint8 N×H×W×C.
        cells: cells per side; default 4 (lowered to the image size).
        bins: orientation bins; default 9.
    """
    x = np.asarray(images, dtype=np.float64) / 255.0
    cells = max(2, min(cells, x.shape[1], x.shape[2]))
    mag, theta = _gradients(x)
    pos = theta / (np.pi / bins) - 0.5
    low = np.floor(pos)
    upper_share = pos - low
    low = low.astype(np.int64) % bins
    votes = np.zeros((*mag.shape, bins))
    np.put_along_axis(votes, low[..., None], (mag * (1 - upper_share))[..., None], axis=-1)
    np.put_along_axis(votes, ((low + 1) % bins)[..., None], (mag * upper_share)[..., None], axis=-1)  # bins > 1
    hist = _block_mean(votes, cells).numpy().transpose(0, 2, 3, 1)  # N×cells×cells×bins (means: size-independent)
    blocks = [hist[:, i:i + 2, j:j + 2].reshape(len(x), -1)
              for i in range(cells - 1) for j in range(cells - 1)]
    out = []
    for block in blocks:
        block = block / np.sqrt((block**2).sum(axis=1, keepdims=True) + 1e-12)
        block = np.minimum(block, HOG_CLIP)
        out.append(block / np.sqrt((block**2).sum(axis=1, keepdims=True) + 1e-12))
    return np.concatenate(out, axis=1)


def pixel_hog_features(images: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Simple features of uint8 N×H×W×C images: (N, d) float64, ``chunk`` images at a time.

    The image block-averaged to at most :data:`PIXEL_SIZE` (8) pixels a side per channel
    (in [0, 1]), :func:`hog`, and global histograms (shares of pixels) of intensity
    (:data:`INTENSITY_BINS` bins over [0, 1], all channels) and gradient magnitude
    (:data:`MAGNITUDE_BINS` bins over [0, 0.5], the last open). At 32×32×1: 64 + 324 + 16 + 8 = 412.
    """
    arr = np.asarray(images)
    if len(arr) > chunk:
        return np.concatenate([pixel_hog_features(arr[i:i + chunk], chunk) for i in range(0, len(arr), chunk)])
    x = arr.astype(np.float64) / 255.0
    n = len(x)
    size = min(PIXEL_SIZE, x.shape[1], x.shape[2])
    pixels = _block_mean(x, size).reshape(n, -1).numpy()
    intensity = np.stack([np.bincount(np.minimum((img * INTENSITY_BINS).astype(np.int64), INTENSITY_BINS - 1).ravel(),
                                      minlength=INTENSITY_BINS) for img in x]) / x[0].size
    mag, _ = _gradients(x)
    mag_bins = np.minimum((mag / 0.5 * MAGNITUDE_BINS).astype(np.int64), MAGNITUDE_BINS - 1).reshape(n, -1)
    magnitude = np.stack([np.bincount(row, minlength=MAGNITUDE_BINS) for row in mag_bins]) / mag_bins.shape[1]
    return np.concatenate([pixels, hog(arr), intensity, magnitude], axis=1)


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Standardise ``train`` and each of ``others`` with the train mean and per-feature
    std (raised to at least :data:`STD_FLOOR` × the mean std); returns them in order."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.maximum(std, STD_FLOOR * (std.mean() or 1.0))
    return [(a - mean) / std for a in (train, *others)]
