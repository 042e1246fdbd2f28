"""The networks of ``image_cgan``: an SNGAN generator with class-conditional BatchNorm and a
projection discriminator with spectral norm, initialized from a given ``torch.Generator``
(never the global RNG)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


# -- initialization without the global RNG ------------------------------------------------------------
def _xavier(weight: torch.Tensor, gen: torch.Generator, gain: float = 1.0) -> None:
    fan_out = weight.shape[0] * (weight[0, 0].numel() if weight.ndim > 2 else 1)
    fan_in = weight.shape[1] * (weight[0, 0].numel() if weight.ndim > 2 else 1)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        weight.uniform_(-bound, bound, generator=gen)


def _init(module: nn.Module, gen: torch.Generator) -> None:
    """Xavier-uniform weights and zero biases for every conv / linear, from ``gen``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            _xavier(m.weight, gen, 1.0 if (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)) else math.sqrt(2))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _sn(module: nn.Module, gen: torch.Generator) -> nn.Module:
    """Spectral norm whose power-iteration vectors are drawn from ``gen``, not the global RNG."""
    module = spectral_norm(module)
    sn = module.parametrizations.weight[0]
    with torch.no_grad():
        sn._u.copy_(F.normalize(torch.randn(sn._u.shape, generator=gen), dim=0, eps=sn.eps))
        sn._v.copy_(F.normalize(torch.randn(sn._v.shape, generator=gen), dim=0, eps=sn.eps))
        sn._power_method(sn._reshape_weight_to_matrix(module.parametrizations.weight.original), 15)
    return module


# -- networks --------------------------------------------------------------------------------------------
class CondBatchNorm(nn.Module):
    """Affine-free BatchNorm with class-dependent gain ``1 + gamma(y)`` and bias ``beta(y)``."""

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(n_classes, channels)
        self.bias = nn.Embedding(n_classes, channels)
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.bn(x)
        return h * (1 + self.gain(y))[:, :, None, None] + self.bias(y)[:, :, None, None]


UPSAMPLE_MODES = ("bilinear", "nearest")


class GBlock(nn.Module):
    """Residual generator block with conditional BN; doubles the resolution when ``up``.

    ``upsample``: ``"bilinear"`` (default) resizes with bilinear interpolation before the
    3 x 3 convolution, and the 1 x 1 shortcut is taken before its (bilinear) upsampling,
    which is the same map at a quarter of the cost; ``"nearest"`` is SNGAN's block
    (nearest-neighbour copies, whose 2 x 2 blocks the shortcut adds to the
    output unsmoothed: a 2-pixel grid in short runs), kept for models saved before the
    option existed.
    """

    def __init__(self, c_in: int, c_out: int, n_classes: int, up: bool = True, upsample: str = "bilinear"):
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        self.up, self.upsample = up, upsample
        self.bn1, self.bn2 = CondBatchNorm(c_in, n_classes), CondBatchNorm(c_out, n_classes)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        if not self.up:
            return x
        if self.upsample == "nearest":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self._up(F.relu(self.bn1(x, y)))
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        if self.upsample == "nearest":
            return h + self.skip(self._up(x))
        return h + self._up(self.skip(x))


def _widths(base: int, levels: int) -> list[int]:
    """Width at each resolution from 4 x 4 (index 0) to the output (index ``levels``)."""
    return [base * min(8, 2 ** (levels - i)) for i in range(levels + 1)]


class ImageGenerator(nn.Module):
    """``(z, y) -> images`` in [-1, 1], ``channels`` x ``size`` x ``size``."""

    def __init__(self, z_dim: int, width: int, size: int, channels: int, n_classes: int, gen: torch.Generator,
                 extra_blocks: int = 0, upsample: str = "bilinear"):
        super().__init__()
        levels = int(math.log2(size)) - 2
        widths = _widths(width, levels)
        self.z_dim, self.start = z_dim, widths[0]
        self.fc = nn.Linear(z_dim, widths[0] * 16)
        extra = [GBlock(widths[0], widths[0], n_classes, up=False) for _ in range(extra_blocks)]  # at 4 x 4
        self.blocks = nn.ModuleList(extra + [GBlock(widths[i], widths[i + 1], n_classes, upsample=upsample)
                                             for i in range(levels)])
        self.bn = nn.BatchNorm2d(widths[-1])
        self.out = nn.Conv2d(widths[-1], channels, 3, padding=1)
        _init(self, gen)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(len(z), self.start, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.out(F.relu(self.bn(h))))


class DBlock(nn.Module):
    """Residual discriminator block (spectral norm); halves the resolution when ``down``.
    A block that keeps the resolution and the width has an identity shortcut."""

    def __init__(self, c_in: int, c_out: int, gen: torch.Generator, first: bool = False, down: bool = True):
        super().__init__()
        self.first, self.down = first, down
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        learned_skip = down or c_in != c_out
        self.skip = nn.Conv2d(c_in, c_out, 1) if learned_skip else None
        _init(self, gen)
        self.conv1, self.conv2 = _sn(self.conv1, gen), _sn(self.conv2, gen)
        if self.skip is not None:
            self.skip = _sn(self.skip, gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if not self.down:
            return h + (x if self.skip is None else self.skip(x))
        h = F.avg_pool2d(h, 2)
        skip = self.skip(F.avg_pool2d(x, 2)) if self.first else F.avg_pool2d(self.skip(x), 2)
        return h + skip


class ProjectionDiscriminator(nn.Module):
    """``(images, y) -> logits``: residual down-blocks, sum pooling, ``linear(h) + <embed(y), h>``."""

    def __init__(self, width: int, size: int, channels: int, n_classes: int, gen: torch.Generator,
                 extra_blocks: int = 1):
        super().__init__()
        levels = int(math.log2(size)) - 2
        widths = [width * min(8, 2**i) for i in range(levels)]  # block i halves size / 2**i
        ins = [channels] + widths[:-1]
        last = widths[-1]
        self.blocks = nn.Sequential(*(DBlock(ins[i], widths[i], gen, first=i == 0) for i in range(levels)),
                                    *(DBlock(last, last, gen, down=False) for _ in range(extra_blocks)))
        self.linear = nn.Linear(last, 1)
        self.embed = nn.Embedding(n_classes, last)
        _init(self.linear, gen)
        _xavier(self.embed.weight, gen)
        self.linear, self.embed = _sn(self.linear, gen), _sn(self.embed, gen)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        return (self.linear(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)).float()
