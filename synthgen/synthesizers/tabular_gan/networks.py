"""The networks of ``tabular_gan``: CTGAN's residual generator, the packed critic (dense
and the lookup :class:`WideCritic` for wide one-hot inputs), seeded dropout, and
PyTorch's default ``Linear`` init drawn from a given ``torch.Generator``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _init_linear(layer: nn.Linear, gen: torch.Generator) -> None:
    """PyTorch's default Linear init, drawn from ``gen`` instead of the global RNG."""
    bound = 1.0 / math.sqrt(layer.in_features)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=gen)
        if layer.bias is not None:
            layer.bias.uniform_(-bound, bound, generator=gen)


class _Residual(nn.Module):
    def __init__(self, i: int, o: int):
        super().__init__()
        self.fc = nn.Linear(i, o)
        self.bn = nn.BatchNorm1d(o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(self.bn(self.fc(x))), x], dim=1)


class Generator(nn.Module):
    """CTGAN's residual generator: ``(noise, cond) -> raw wide-matrix logits``.

    With ``cond_embed=(levels, k)`` (wide mode) the input is ``noise`` plus a learned
    ``k``-wide embedding of the conditioned level instead of the one-hot vector;
    :meth:`forward` then takes ``(noise, levels)``.
    """

    def __init__(self, in_dim: int, dims: list[int], out_dim: int, gen: torch.Generator,
                 cond_embed: tuple[int, int] | None = None):
        super().__init__()
        layers: list[nn.Module] = []
        self.cond_embed: nn.Embedding | None = None
        if cond_embed is not None:
            self.cond_embed = nn.Embedding(*cond_embed)
            with torch.no_grad():
                self.cond_embed.weight.normal_(generator=gen)
        d = in_dim
        for h in dims:
            layers.append(_Residual(d, h))
            d += h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, out_dim)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                _init_linear(m, gen)

    def forward(self, x: torch.Tensor, levels: torch.Tensor | None = None) -> torch.Tensor:
        if self.cond_embed is not None:
            x = torch.cat([x, self.cond_embed(levels)], dim=1)
        return self.head(self.body(x))


class SeededDropout(nn.Module):
    """Dropout whose mask comes from a given ``torch.Generator`` (reproducible)."""

    def __init__(self, p: float, gen: torch.Generator):
        super().__init__()
        self.p, self.gen = p, gen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape, generator=self.gen, device=x.device) >= self.p
        return x * keep / (1 - self.p)


class Critic(nn.Module):
    """CTGAN's critic: ``pac`` rows judged together (rows reshaped into packs)."""

    def __init__(self, in_dim: int, dims: list[int], pac: int, dropout: float, gen: torch.Generator):
        super().__init__()
        self.pac = pac
        layers: list[nn.Module] = []
        d = in_dim * pac
        for h in dims:
            layers += [nn.Linear(d, h), nn.LeakyReLU(0.2), SeededDropout(dropout, gen)]
            d = h
        layers.append(nn.Linear(d, 1))
        self.seq = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                _init_linear(m, gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x.reshape(-1, x.shape[1] * self.pac)).squeeze(1)


class WideCritic(nn.Module):
    """:class:`Critic` for wide one-hot inputs: the first layer is a weight stored
    input-major, ``(pac * row_width, h)``, so that one-hot entries are read as an
    ``embedding_bag`` of its rows; the rest is the dense critic's.

    :meth:`forward_mixed` takes, per row, a dense prefix (the first ``dense.shape[1]``
    entries of the row: ``alpha`` for real rows, the whole generated part for fake
    rows) and the positions (with optional weights) of its remaining non-zero
    entries; it equals ``Critic.forward`` of the densified rows with
    ``weight = first.T`` (tested). :meth:`forward` on dense rows is kept for the
    gradient penalty.
    """

    def __init__(self, in_dim: int, dims: list[int], pac: int, dropout: float, gen: torch.Generator):
        super().__init__()
        dense = Critic(in_dim, dims, pac, dropout, gen)  # same init draws as the dense critic
        self.pac, self.row = pac, in_dim
        first = dense.seq[0]
        self.first_weight = nn.Parameter(first.weight.detach().t().contiguous())
        self.first_bias = nn.Parameter(first.bias.detach().clone())
        self.rest = nn.Sequential(*list(dense.seq)[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(-1, x.shape[1] * self.pac) @ self.first_weight + self.first_bias
        return self.rest(h).squeeze(1)

    def forward_mixed(self, dense: torch.Tensor, idx: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        b, k = idx.shape
        packs, pac, dw = b // self.pac, self.pac, dense.shape[1]
        h = self.first_bias
        if dw:  # one (packs, dw) @ (dw, h) per pack slot; the weight blocks are contiguous
            w = self.first_weight.view(pac, self.row, -1)[:, :dw]  # (pac, dw, h)
            h = h + torch.bmm(dense.reshape(packs, pac, dw).transpose(0, 1), w).sum(0)
        offs = torch.arange(pac, device=idx.device).mul_(self.row).view(1, pac, 1)
        flat = (idx.view(packs, pac, k) + offs).view(packs, pac * k)
        psw = None if weights is None else weights.reshape(packs, pac * k)
        h = h + F.embedding_bag(flat, self.first_weight, per_sample_weights=psw, mode="sum")
        return self.rest(h).squeeze(1)
