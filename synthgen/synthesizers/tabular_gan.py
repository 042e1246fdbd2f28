"""``model.name: tabular_gan`` - synthgen's own CTGAN-style engine.

The model is CTGAN's (Xu et al. 2019): mode-specific normalization of continuous
columns, one-hot categoricals, a conditional vector with training-by-sampling, a
residual generator and a packed critic. What differs is how it is computed:

* **Vectorized everywhere.** The fitted :class:`~synthgen.transformers.mode_normalizer.ModeNormalizer`
  is a batched EM, not a Bayesian mixture per column. The table lives on the device
  as per-row ``alpha`` values plus the positions of its hot entries; a batch is
  gathered and densified with one ``scatter`` per step. Conditions are drawn with
  precomputed index arrays (a column uniformly, a level by log-frequency, then a row
  of that level: ``rows_by_level[start[g] + floor(u * count[g])]``). Generator
  activations over all spans are one ``tanh`` and one *segmented* Gumbel-softmax
  (``scatter_reduce``/``scatter_add`` over span ids), and the conditional
  cross-entropy is one segmented log-sum-exp. No Python loop over rows or columns runs
  inside a training step.
* **Cheaper objective.** By default the critic is trained with the logistic
  (non-saturating) GAN loss and no gradient penalty - packing and dropout keep it
  smooth enough on tabular data - so a step needs no double backward; it is also the
  loss the private critic must use, so DP and non-DP runs share one objective. CTGAN's
  WGAN-GP stays available (``options.loss = "wgan-gp"``) with the penalty applied
  lazily, every ``gp_every`` critic steps with its weight scaled up accordingly
  (StyleGAN2's lazy regularisation). Networks are half CTGAN's width (128, 128).
* **Explicit randomness.** Parameters are initialized, dropout masks, Gumbel noise and
  batches are drawn from ``torch.Generator`` objects seeded from ``model.seed``; no
  global seeding. Same seed, same device -> the same model and the same rows.
* **Missing values and high cardinality** are handled deliberately: the preparer turns
  missing numbers into a ``<col>__missing`` level column modelled jointly with the
  rest (and pools levels beyond ``data.max_categories``); this engine never builds a
  dense one-hot of the table, so a column with 10,000 levels costs one integer per row
  plus its span in the networks.
* **Wide categoricals are cheap** (``options.wide_min_levels``, default 1024: when the
  discrete block - the conditional vector - has at least that many levels). The
  generator then reads its condition through a learned ``cond_embed_dim``-wide
  embedding (a lookup of the one conditioned level, instead of a 10,000-wide one-hot
  that the residual blocks would carry all the way into the output layer), and the
  critic's first layer (:class:`WideCritic`) is stored input-major and consumes every
  one-hot entry - the real rows' modes and levels and every row's conditional vector -
  as an ``embedding_bag`` of weight rows (the ``alpha`` values as per-sample weights),
  which equals the dense ``Linear`` on the one-hot input; only the generated rows'
  soft Gumbel outputs still go through a matmul. The WGAN penalty (which needs the
  gradient w.r.t. a dense interpolated input) and the DP critic (Opacus' per-sample
  gradients know ``nn.Linear``, not this layer) keep the dense :class:`Critic`.
  ``bench/memory.py`` measures it: 100k rows with a 10,000-level column and
  ``max_categories=10000`` train within 4 GB resident memory.

Fields of ``model`` left unset in params take this family's defaults
(:data:`FAMILY_DEFAULTS`, chosen with ``bench/tabular.py``); an unset ``epochs`` becomes
a budget of optimizer steps with a floor of passes (:data:`STEP_BUDGET`,
:data:`MIN_EPOCHS`), settled on the training table before training starts. The resolved values are what the saved config records.

**Conditional sampling** is exact and bounded: with discrete conditions the generator
is fed the conditional vector of one conditioned column per row (round-robin over the
conditioned columns); rows meeting *all* conditions are kept, for at most
``resample_rounds`` rounds; rows still missing after that are taken from the last round
with the conditioned cells overwritten (discrete: set to the level; numeric: clipped
into ``[low, high]`` and its missing flag cleared). So ``n`` rows always come back,
and the overwrite only touches the rare remainder.

**Differential privacy** (``privacy.epsilon``): see :mod:`synthgen.privacy`. The critic
is trained with DP-SGD on Poisson-sampled rows (``pac`` = 1, logistic loss, no
gradient penalty); the generator's conditions are drawn from DP-noised level counts;
continuous modes are evenly spaced over the public ranges; missing numbers are
imputed with the public range midpoint instead of the data's median.

**Batch size**: rows are drawn with replacement per condition, so any batch works,
but an explicit ``model.batch_size`` larger than the training table is a
:class:`~synthgen.errors.ConfigError`; unset, it is ``min(family default, rows)``.
Batches are rounded down to a multiple of ``pac``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from synthgen.config import ModelConfig
from synthgen.errors import ConditionError, ConfigError, ModelError
from synthgen.synthesizers.base import Synthesizer
from synthgen.training.device import resolve_device
from synthgen.training.callbacks import CallbackList
from synthgen.training.loop import GANLoop, LoopResult
from synthgen.transformers.mode_normalizer import EncodedTable, ModeNormalizer
from synthgen.transformers.prepare import MISSING_SUFFIX, TablePreparer

log = logging.getLogger(__name__)

#: Defaults of ``model.*`` for this family when params leave a field unset.
STEP_BUDGET = 3000
MIN_EPOCHS = 60
"""When ``model.epochs`` is unset: ``epochs = max(MIN_EPOCHS, ceil(STEP_BUDGET /
steps_per_epoch))``. Small tables get a fixed amount of training (the 275-row demo split:
3000 epochs of one step), big ones at least 60 passes (the 53,940-row ``diamonds``: 60
epochs of 107 steps). Both figures come from ``bench/tabular.py`` (BENCHMARKS.md): 3000
steps pass the demo's trust gate where fewer do not; on ``diamonds`` 60 epochs beat
ctgan's 300-epoch quality (0.921 vs 0.916 over 3 seeds) and 30 epochs did not (0.908)."""

FAMILY_DEFAULTS: dict[str, Any] = {
    "batch_size": 500,  # capped at the number of training rows
    "generator_dim": [128, 128],  # half CTGAN's width: ~3x cheaper steps, same quality
    "discriminator_dim": [128, 128],
    "embedding_dim": 128,
    "pac": 10,
    "lr": 2e-4,
}

MODEL_FILE = "tabular_gan.pt"


@dataclass
class TabularGANOptions:
    """Engine knobs not exposed in params (the benchmark may set them).

    Attributes:
        loss: ``"logistic"`` (default; non-saturating GAN loss, no penalty; always used
            under DP) or ``"wgan-gp"`` (CTGAN's, with the lazy penalty below).
        gp_weight: gradient-penalty weight. Default 10.
        gp_every: apply the penalty every this many critic steps (lazy). Default 16.
        critic_steps: critic updates per generator update. Default 1.
        min_steps_per_epoch: at least this many steps per epoch. Default 1.
        tau: Gumbel-softmax temperature. Default 0.2.
        dropout: critic dropout. Default 0.5.
        betas: Adam betas. Default (0.5, 0.9).
        weight_decay: Adam weight decay. Default 1e-6.
        resample_rounds: bounded rejection rounds of conditional sampling. Default 5.
        wide_min_levels: from this many discrete levels (the conditional vector's
            width) on, the generator embeds the condition and the critic reads one-hot
            entries by lookup (see the module docstring). Default 1024.
        cond_embed_dim: width of the generator's condition embedding in that mode.
            Default 128.
    """

    loss: str = "logistic"
    gp_weight: float = 10.0
    gp_every: int = 16
    critic_steps: int = 1
    min_steps_per_epoch: int = 1
    tau: float = 0.2
    dropout: float = 0.5
    betas: tuple[float, float] = (0.5, 0.9)
    weight_decay: float = 1e-6
    resample_rounds: int = 5
    wide_min_levels: int = 1024
    cond_embed_dim: int = 128


# -- networks -------------------------------------------------------------------------------
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


# -- vectorized span ops ---------------------------------------------------------------------
class SpanOps:
    """Activations and losses over the wide matrix's spans, without a loop over them."""

    def __init__(self, normalizer: ModeNormalizer, device: torch.device):
        self.c = normalizer.n_continuous
        self.width = normalizer.width
        self.disc_start = normalizer.disc_start
        seg = torch.as_tensor(normalizer.softmax_segments(), dtype=torch.int64, device=device)
        self.seg = seg
        self.n_seg = int(seg.max()) + 1 if len(seg) else 0
        self.spans = normalizer.spans

    def _seg_max(self, x: torch.Tensor) -> torch.Tensor:
        idx = self.seg.expand(x.shape[0], -1)
        m = torch.full((x.shape[0], self.n_seg), -torch.inf, device=x.device, dtype=x.dtype)
        return m.scatter_reduce(1, idx, x.detach(), "amax", include_self=True)

    def activate(self, raw: torch.Tensor, tau: float, gen: torch.Generator) -> torch.Tensor:
        """``tanh`` on alpha entries, Gumbel-softmax(tau) within every other span."""
        alpha = torch.tanh(raw[:, : self.c])
        logits = raw[:, self.c :]
        u = torch.rand(logits.shape, generator=gen, device=raw.device).clamp_(1e-10, 1 - 1e-7)
        y = (logits - torch.log(-torch.log(u))) / tau
        idx = self.seg.expand(raw.shape[0], -1)
        e = torch.exp(y - self._seg_max(y).gather(1, idx))
        s = torch.zeros(raw.shape[0], self.n_seg, device=raw.device, dtype=raw.dtype).scatter_add(1, idx, e)
        return torch.cat([alpha, e / s.gather(1, idx)], dim=1)

    def cond_cross_entropy(self, raw: torch.Tensor, target_pos: torch.Tensor) -> torch.Tensor:
        """Per-row cross-entropy of the generated span of the conditioned column
        against its conditioned level (``target_pos``: wide positions)."""
        logits = raw[:, self.c :]
        idx = self.seg.expand(raw.shape[0], -1)
        m = self._seg_max(logits)
        s = torch.zeros_like(m).scatter_add(1, idx, torch.exp(logits - m.gather(1, idx)))
        tgt = (target_pos - self.c).unsqueeze(1)
        seg_t = self.seg[tgt]
        lse = torch.log(s.gather(1, seg_t)) + m.gather(1, seg_t)
        return (lse - logits.gather(1, tgt)).squeeze(1)

    def hard_sample(self, raw: torch.Tensor, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Sampling-time decode: alpha values and one drawn position per softmax span
        (Gumbel-max, i.e. a categorical draw from the span's softmax)."""
        alpha = torch.tanh(raw[:, : self.c])
        logits = raw[:, self.c :]
        u = torch.rand(logits.shape, generator=gen, device=raw.device).clamp_(1e-10, 1 - 1e-7)
        y = logits - torch.log(-torch.log(u))
        hot = [
            span.start + y[:, span.start - self.c : span.start - self.c + span.size].argmax(dim=1)
            for span in self.spans[self.c :]
        ]
        hot_t = torch.stack(hot, dim=1) if hot else torch.zeros(len(raw), 0, dtype=torch.int64)
        return alpha.cpu().numpy(), hot_t.cpu().numpy()


# -- training-by-sampling -------------------------------------------------------------------------
class CondSampler:
    """Conditional vectors and matching real rows, drawn on the device.

    Args:
        encoded: the encoded table.
        normalizer: the fitted normalizer.
        device: where index arrays live.
        level_counts: counts of every discrete level in wide order (after ``disc_start``);
            defaults to the data's (under DP, pass the noisy released counts).
    """

    def __init__(self, encoded: EncodedTable, normalizer: ModeNormalizer, device: torch.device,
                 level_counts: np.ndarray | None = None):
        c = normalizer.n_continuous
        self.device = device
        self.disc_start = normalizer.disc_start
        self.c = c
        level_spans = [s for s in normalizer.spans if s.kind == "level"]
        self.n_disc = len(level_spans)
        codes = encoded.hot[:, c:] - normalizer.disc_start  # (n, D) global level ids
        n = len(codes)
        width = normalizer.cond_width
        true_counts = np.bincount(codes.ravel(), minlength=width) if self.n_disc else np.zeros(0)
        counts = true_counts if level_counts is None else np.clip(level_counts, 0.0, None)
        # rows grouped by level: for level g, rows_by_level[start[g] : start[g] + count[g]]
        order = np.argsort(codes.T.ravel(), kind="stable")  # column-major: col j's rows at j*n..
        self.rows_by_level = torch.as_tensor(order % max(n, 1), dtype=torch.int64, device=device)
        starts = np.concatenate([[0], np.cumsum(true_counts)[:-1]]) if self.n_disc else np.zeros(0)
        self.start = torch.as_tensor(starts, dtype=torch.int64, device=device)
        self.count = torch.as_tensor(true_counts, dtype=torch.int64, device=device)
        self.col_of_level = torch.as_tensor(
            np.repeat(np.arange(self.n_disc), [s.size for s in level_spans]), dtype=torch.int64, device=device
        )
        # per-column cumulative probabilities, offset by the column index, flattened:
        # level = searchsorted(cum, col + u)
        self.cum_log = self._flat_cum(np.log1p(counts), level_spans)
        self.cum_freq = self._flat_cum(counts, level_spans)
        self.codes = torch.as_tensor(codes, dtype=torch.int64, device=device)

    def _flat_cum(self, weights: np.ndarray, spans: list[Any]) -> torch.Tensor:
        out = np.zeros(len(weights), dtype=np.float64)
        pos = 0
        for j, span in enumerate(spans):
            w = weights[pos : pos + span.size].astype(np.float64)
            w = w + 1e-12 if w.sum() <= 0 else w
            cum = np.cumsum(w) / w.sum()
            cum[-1] = 1.0
            out[pos : pos + span.size] = j + cum
            pos += span.size
        return torch.as_tensor(out, dtype=torch.float64, device=self.device)

    def draw_levels(self, b: int, gen: torch.Generator, log_freq: bool = True) -> torch.Tensor:
        """``b`` global level ids: a column uniformly, a level by (log-)frequency."""
        col = torch.randint(self.n_disc, (b,), generator=gen, device=self.device)
        u = torch.rand(b, generator=gen, device=self.device, dtype=torch.float64)
        cum = self.cum_log if log_freq else self.cum_freq
        g = torch.searchsorted(cum, col.double() + u, right=False)
        return torch.minimum(g, self.col_of_level.new_tensor(len(cum) - 1))

    def rows_for(self, levels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One real row having each given level (uniformly among them)."""
        cnt = self.count[levels]
        off = (torch.rand(len(levels), generator=gen, device=self.device) * cnt).long()
        off = torch.minimum(off, (cnt - 1).clamp(min=0))
        return self.rows_by_level[self.start[levels] + off]

    def own_levels(self, rows: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """For each row, its level in a uniformly chosen discrete column."""
        col = torch.randint(self.n_disc, (len(rows),), generator=gen, device=self.device)
        return self.codes[rows, col]


# -- the loss object -----------------------------------------------------------------------------
class TabularGANLoss:
    """CTGAN's objective with one method per phase (see :mod:`synthgen.training.loop`).

    Non-private: real rows are picked by the conditioning level (training-by-sampling),
    critic loss logistic (or WGAN with a lazy gradient penalty). Private: real rows are
    Poisson-sampled and conditioned on their own level in a random column; the critic
    returns per-sample logistic losses for DP-SGD.
    """

    def __init__(self, gen_net: Generator, critic: nn.Module, ops: SpanOps, sampler: CondSampler,
                 alpha: torch.Tensor, hot: torch.Tensor, batch: int, embedding_dim: int,
                 options: TabularGANOptions, gen: torch.Generator, private: bool = False,
                 sample_rate: float = 1.0):
        self.G, self.D, self.ops, self.s = gen_net, critic, ops, sampler
        self.alpha, self.hot = alpha, hot
        self.batch, self.emb, self.o, self.gen = batch, embedding_dim, options, gen
        self.private, self.q = private, sample_rate
        self.device = alpha.device
        self.has_cond = sampler.n_disc > 0
        self.wide = isinstance(critic, WideCritic)
        self.embed_cond = getattr(gen_net, "cond_embed", None) is not None

    def _cond(self, levels: torch.Tensor | None, b: int) -> torch.Tensor:
        width = self.ops.width - self.ops.disc_start
        c = torch.zeros(b, width, device=self.device)
        if levels is not None:
            c.scatter_(1, levels.unsqueeze(1), 1.0)
        return c

    def _dense(self, rows: torch.Tensor) -> torch.Tensor:
        x = torch.zeros(len(rows), self.ops.width, device=self.device)
        x[:, : self.ops.c] = self.alpha[rows]
        x.scatter_(1, self.hot[rows], 1.0)
        return x

    def _fake(self, b: int, levels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = torch.randn(b, self.emb, generator=self.gen, device=self.device)
        if self.embed_cond:
            cond = None if self.wide else self._cond(levels, b)
            raw = self.G(z, levels)
        else:
            cond = self._cond(levels, b)
            raw = self.G(torch.cat([z, cond], dim=1))
        return raw, self.ops.activate(raw, self.o.tau, self.gen), cond

    def _critic_fake(self, fake: torch.Tensor, cond: torch.Tensor | None, levels: torch.Tensor | None) -> torch.Tensor:
        if self.wide:  # the conditional one-hot by lookup, the soft generated part dense
            return self.D.forward_mixed(fake, (levels + self.ops.width).unsqueeze(1))
        return self.D(torch.cat([fake, cond], dim=1))

    def _critic_real(self, rows: torch.Tensor, cond: torch.Tensor | None, levels: torch.Tensor | None) -> torch.Tensor:
        if self.wide:  # alpha dense, every hot entry (modes, levels, condition) by lookup
            idx = torch.cat([self.hot[rows], (levels + self.ops.width).unsqueeze(1)], dim=1)
            return self.D.forward_mixed(self.alpha[rows], idx)
        return self.D(torch.cat([self._dense(rows), cond], dim=1))

    def _levels(self, b: int) -> torch.Tensor | None:
        return self.s.draw_levels(b, self.gen) if self.has_cond else None

    def critic_loss(self, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.private:
            return self._critic_loss_private()
        b = self.batch
        levels = self._levels(b)
        with torch.no_grad():
            _, fake, cond = self._fake(b, levels)
        if levels is not None:
            perm = torch.randperm(b, generator=self.gen, device=self.device)
            levels_r = levels[perm]
            rows = self.s.rows_for(levels_r, self.gen)
            cond_r = cond[perm] if cond is not None else None
        else:
            rows = torch.randint(len(self.alpha), (b,), generator=self.gen, device=self.device)
            cond_r, levels_r = cond, None
        d_real, d_fake = self._critic_real(rows, cond_r, levels_r), self._critic_fake(fake, cond, levels)
        if self.o.loss == "logistic":
            loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        else:
            loss = d_fake.mean() - d_real.mean()
        logs = {"loss_d": loss.detach()}
        if self.o.loss == "wgan-gp" and self.o.gp_weight > 0 and step % self.o.gp_every == 0:
            if cond is None:  # wide mode: densify only on penalty steps
                cond, cond_r = self._cond(levels, b), self._cond(levels_r, b)
            real = torch.cat([self._dense(rows), cond_r], dim=1)
            gp = self._gradient_penalty(real, torch.cat([fake, cond], dim=1))
            loss = loss + self.o.gp_weight * self.o.gp_every * gp
            logs["gp"] = gp.detach() * self.o.gp_every
        return loss, logs

    def _gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        pac = self.D.pac if hasattr(self.D, "pac") else 1
        n_packs = real.shape[0] // pac
        w = torch.rand(n_packs, 1, 1, generator=self.gen, device=self.device)
        w = w.expand(n_packs, pac, 1).reshape(-1, 1)
        x = (w * real + (1 - w) * fake).requires_grad_(True)
        out = self.D(x)
        (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        norms = grad.reshape(n_packs, -1).norm(2, dim=1)
        return ((norms - 1) ** 2).mean()

    def _critic_loss_private(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n = len(self.alpha)
        mask = torch.rand(n, generator=self.gen, device=self.device) < self.q
        rows = mask.nonzero().squeeze(1)
        b_fake = max(1, round(self.q * n))
        levels = self._levels(b_fake)
        with torch.no_grad():
            _, fake, cond = self._fake(b_fake, levels)
        cond = self._cond(levels, b_fake) if cond is None else cond
        own = self.s.own_levels(rows, self.gen) if self.has_cond else None
        real = torch.cat([self._dense(rows), self._cond(own, len(rows))], dim=1)
        x = torch.cat([real, torch.cat([fake, cond], dim=1)], dim=0)
        d = self.D(x)
        sign = torch.cat([-torch.ones(len(rows), device=self.device), torch.ones(b_fake, device=self.device)])
        per_sample = F.softplus(sign * d)
        return per_sample, {"loss_d": per_sample.detach().mean()}

    def generator_loss(self, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        b = self.batch
        levels = self._levels(b)
        raw, fake, cond = self._fake(b, levels)
        d = self._critic_fake(fake, cond, levels)
        adv = F.softplus(-d).mean() if (self.o.loss == "logistic" or self.private) else -d.mean()
        logs = {"loss_g": adv.detach()}
        if levels is not None:
            ce = self.ops.cond_cross_entropy(raw, levels + self.s.disc_start).mean()
            logs["loss_cond"] = ce.detach()
            adv = adv + ce
        return adv, logs


# -- the family ----------------------------------------------------------------------------------
class TabularGANSynthesizer(Synthesizer):
    """synthgen's CTGAN-style engine (see the module docstring).

    ``checkpoint_dir`` (default ``None``): where :class:`GANLoop` writes checkpoints
    every ``model.checkpoint_every`` epochs and resumes from.
    """

    name = "tabular_gan"
    native_conditions = True
    # Missing-value indicators are rare levels that training-by-sampling over-weights:
    # modelled jointly, 0.4% missing came back as 4-6% on penguins; so missingness is
    # drawn independently at the training rate (see TablePreparer).
    joint_missing = False
    supports_privacy = True

    def __init__(self, schema, config=None, privacy=None, max_categories: int = 500,
                 checkpoint_dir: str | Path | None = None):
        config = config or ModelConfig(name=self.name)
        epochs_explicit = "epochs" in config.model_fields_set
        unset = {k: v for k, v in FAMILY_DEFAULTS.items() if k not in config.model_fields_set}
        if unset:
            config = config.model_copy(update=unset)
            config = ModelConfig(**config.model_dump())  # every field now explicitly set
        self._epochs_explicit = epochs_explicit
        super().__init__(schema, config, privacy, max_categories, checkpoint_dir)
        self._batch_explicit = "batch_size" not in unset
        self.options = TabularGANOptions()
        if self.privacy.epsilon is not None and not self.privacy.epsilon > 0:
            raise ConfigError(f"privacy.epsilon must be > 0, got {self.privacy.epsilon!r}")

    # -- fit ------------------------------------------------------------------------------------
    def _batch_and_pac(self, n: int) -> tuple[int, int]:
        """The batch (a multiple of pac, at most ``n`` rows) and pac of a fit on ``n`` rows."""
        cfg = self.config
        private = self.privacy.epsilon is not None
        pac = 1 if private else cfg.pac
        if self._batch_explicit and cfg.batch_size > n:
            raise ConfigError(f"model.batch_size={cfg.batch_size} is larger than the {n} training rows")
        batch = min(cfg.batch_size, n) // pac * pac
        if batch < pac:
            raise ConfigError(f"model.batch_size={cfg.batch_size} is smaller than model.pac={pac}")
        return batch, pac

    def _steps_per_epoch(self, n: int, batch: int) -> int:
        return max(self.options.min_steps_per_epoch, n // batch)

    def _resolve_config(self, n_rows: int) -> None:
        """``model.epochs`` unset: :data:`STEP_BUDGET` steps' worth, at least :data:`MIN_EPOCHS`."""
        if self._epochs_explicit:
            return
        batch, _ = self._batch_and_pac(n_rows)
        steps = self._steps_per_epoch(n_rows, batch)
        epochs = max(MIN_EPOCHS, math.ceil(STEP_BUDGET / steps))
        self.config = self.config.model_copy(update={"epochs": epochs})
        log.info("tabular_gan: %d epochs of %d steps of %d rows (model.epochs unset)", epochs, steps, batch)

    def _fit(self, prepared: pd.DataFrame, discrete_columns: list[str], callbacks: CallbackList) -> None:
        import time

        cfg, opts = self.config, self.options
        private = self.privacy.epsilon is not None
        device = torch.device(resolve_device(cfg.device))
        n = len(prepared)
        batch, pac = self._batch_and_pac(n)
        if private and cfg.pac != 1:
            log.info("tabular_gan: pac=1 under differential privacy (per-row clipping)")
        tick = time.perf_counter()
        seed = cfg.seed
        self.gen_ = torch.Generator(device=device).manual_seed(seed)
        init_gen = torch.Generator().manual_seed(seed + 1)
        np_rng = np.random.default_rng(seed)
        prepared = self._public_imputation(prepared) if private else prepared
        self.normalizer_ = ModeNormalizer(public_modes=private, bounds=self._bounds(prepared), seed=seed)
        self.normalizer_.fit(prepared, discrete_columns)
        encoded = self.normalizer_.transform(prepared, np_rng)
        self.preprocess_seconds_ = time.perf_counter() - tick
        ops = SpanOps(self.normalizer_, device)
        steps = self._steps_per_epoch(n, batch)
        priv = None
        level_counts = None
        codes = encoded.hot[:, self.normalizer_.n_continuous :] - self.normalizer_.disc_start
        if private:
            from synthgen.privacy import CriticPrivacy

            priv = CriticPrivacy(
                self.privacy.epsilon, self.privacy.delta, self.privacy.max_grad_norm, n, batch,
                planned_steps=cfg.epochs * steps * opts.critic_steps, n_discrete=codes.shape[1],
                accountant=self.privacy.accountant, noise_multiplier=self.privacy.noise_multiplier,
                grad_sample_mode=self.privacy.grad_sample_mode,
                generator=torch.Generator(device=device).manual_seed(seed + 2),
            )
            true_counts = np.bincount(codes.ravel(), minlength=self.normalizer_.cond_width)
            level_counts = priv.noisy_counts(true_counts)
        sampler = CondSampler(encoded, self.normalizer_, device, level_counts)
        self.sampling_counts_ = (
            np.clip(level_counts, 0, None) if level_counts is not None
            else np.bincount(codes.ravel(), minlength=self.normalizer_.cond_width).astype(float)
        )
        cond_w = self.normalizer_.cond_width
        self.generator_ = self._make_generator(init_gen).to(device)
        wide = self._wide() and not private  # Opacus needs the dense nn.Linear critic
        critic_cls = WideCritic if wide else Critic
        critic = critic_cls(self.normalizer_.width + cond_w, list(cfg.discriminator_dim), pac, opts.dropout, self.gen_).to(device)
        opt_g = torch.optim.Adam(self.generator_.parameters(), lr=cfg.lr, betas=opts.betas, weight_decay=opts.weight_decay)
        opt_d = torch.optim.Adam(critic.parameters(), lr=cfg.lr, betas=opts.betas, weight_decay=opts.weight_decay)
        d_module = critic
        if priv is not None:
            d_module, opt_d = priv.wrap(critic, opt_d)
        alpha_t = torch.as_tensor(encoded.alpha, device=device)
        hot_t = torch.as_tensor(encoded.hot, device=device)
        loss = TabularGANLoss(self.generator_, d_module, ops, sampler, alpha_t, hot_t, batch, cfg.embedding_dim,
                              opts, self.gen_, private=private, sample_rate=priv.sample_rate if priv else 1.0)
        rngs: dict[str, Any] = {"torch": self.gen_, "numpy": np_rng}
        if priv is not None and priv.generator is not None:
            rngs["dp_noise"] = priv.generator
        loop = GANLoop(
            loss, self.generator_, critic, opt_g, opt_d, epochs=cfg.epochs, steps_per_epoch=steps,
            critic_steps=opts.critic_steps, callbacks=callbacks, checkpoint_dir=self.checkpoint_dir,
            checkpoint_every=cfg.checkpoint_every, rngs=rngs, privacy=priv,
            fingerprint=self._fingerprint(prepared, batch, pac),
        )
        self.generator_.train()
        critic.train()
        result: LoopResult = loop.run()
        self.generator_.eval()
        self.loop_result_ = result
        self.device_ = device
        self.batch_ = batch
        self.privacy_summary_ = priv.summary() if priv is not None else None
        if priv is not None and hasattr(d_module, "_close"):
            d_module._close()

    def _wide(self) -> bool:
        return self.normalizer_.cond_width >= self.options.wide_min_levels

    def _make_generator(self, gen: torch.Generator) -> Generator:
        cfg, norm = self.config, self.normalizer_
        if self._wide():
            k = self.options.cond_embed_dim
            return Generator(cfg.embedding_dim + k, list(cfg.generator_dim), norm.width, gen,
                             cond_embed=(norm.cond_width, k))
        return Generator(cfg.embedding_dim + norm.cond_width, list(cfg.generator_dim), norm.width, gen)

    def _bounds(self, prepared: pd.DataFrame) -> dict[str, tuple[float, float]]:
        out: dict[str, tuple[float, float]] = {}
        for spec in self.schema.columns:
            if spec.modelled and not spec.discrete and spec.name in prepared:
                if spec.min is not None and spec.max is not None:
                    out[spec.name] = (float(spec.min), float(spec.max))
                else:
                    values = prepared[spec.name].to_numpy(dtype=float)
                    out[spec.name] = (float(values.min()), float(values.max()))
        return out

    def _public_imputation(self, prepared: pd.DataFrame) -> pd.DataFrame:
        prepared = prepared.copy()
        for col, (lo, hi) in self._bounds(prepared).items():
            flag = f"{col}{MISSING_SUFFIX}"
            if flag in prepared:
                prepared.loc[prepared[flag].astype(str) == "1", col] = (lo + hi) / 2
        return prepared

    def _fingerprint(self, prepared: pd.DataFrame, batch: int, pac: int) -> str:
        h = hashlib.sha256()
        h.update(json.dumps([self.config.model_dump(), self.privacy.model_dump(), asdict(self.options), batch, pac],
                            sort_keys=True, default=str).encode())
        h.update(pd.util.hash_pandas_object(prepared, index=False).to_numpy().tobytes())
        return h.hexdigest()

    def extra_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"options": asdict(self.options)}
        res = getattr(self, "loop_result_", None)
        if res is not None:
            meta.update(epochs_run=res.epochs_run, stopped_early=res.stopped_early, resumed_from=res.resumed_from,
                        batch_size=self.batch_, preprocess_seconds=self.preprocess_seconds_)
        if getattr(self, "privacy_summary_", None):
            meta.update(self.privacy_summary_)
        return meta

    # -- sample ------------------------------------------------------------------------------------
    @torch.no_grad()
    def _generate(self, levels: np.ndarray | None, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        b = len(levels) if levels is not None else 0
        norm = self.normalizer_
        z = torch.randn(b, self.config.embedding_dim, generator=gen, device=self.device_)
        lv = torch.as_tensor(levels, device=self.device_) if levels is not None else None
        if self.generator_.cond_embed is not None:
            raw = self.generator_(z, lv)
        else:
            cond = torch.zeros(b, norm.cond_width, device=self.device_)
            if norm.cond_width:
                cond.scatter_(1, lv.unsqueeze(1), 1.0)
            raw = self.generator_(torch.cat([z, cond], dim=1))
        return SpanOps(norm, self.device_).hard_sample(raw, gen)

    def _draw_levels(self, b: int, rng: np.random.Generator) -> np.ndarray:
        """Unconditional: a discrete column uniformly, a level by its frequency."""
        norm = self.normalizer_
        spans = [s for s in norm.spans if s.kind == "level"]
        if not spans:
            return np.zeros(b, dtype=np.int64)
        cols = rng.integers(len(spans), size=b)
        u = rng.random(b)
        starts = np.array([s.start - norm.disc_start for s in spans])
        sizes = np.array([s.size for s in spans])
        out = np.empty(b, dtype=np.int64)
        cum = np.concatenate([
            j + np.cumsum(w := self.sampling_counts_[st : st + sz] + 1e-12) / w.sum()
            for j, (st, sz) in enumerate(zip(starts, sizes))
        ])
        out[:] = np.searchsorted(cum, cols + u)
        return np.minimum(out, len(cum) - 1)

    def _sample(self, n: int, rng: np.random.Generator, conditions: dict[str, Any] | None) -> pd.DataFrame:
        norm = self.normalizer_
        gen = torch.Generator(device=self.device_).manual_seed(int(rng.integers(2**62)))
        self.generator_.eval()
        conditions = conditions or {}
        disc = {c: v for c, v in conditions.items() if c in norm.levels_}
        num = {c: v for c, v in conditions.items() if c not in norm.levels_}
        for col, level in disc.items():
            if level not in norm.lookup_[col]:
                raise ConditionError(f"column {col!r} never had the value {level!r} in training")
        for col in num:
            if col not in norm.continuous_columns_:
                raise ConditionError(f"column {col!r} cannot take a numeric range condition")
        disc_pos = {c: norm.level_position(c, v) for c, v in disc.items()}
        flags = {c: f"{c}{MISSING_SUFFIX}" for c in num if f"{c}{MISSING_SUFFIX}" in norm.levels_}
        flag_pos = {c: norm.level_position(f, "0") for c, f in flags.items() if "0" in norm.lookup_[f]}
        if any(c in flags and c not in flag_pos for c in num):
            raise ConditionError(f"conditions {num}: those columns were never present in training")
        rounds = 1 + (self.options.resample_rounds if conditions else 0)
        kept_a, kept_h, have = [], [], 0
        for r in range(rounds):
            b = max(n - have, 256) if conditions else n
            if disc:
                cols = list(disc_pos.values())
                levels = np.array(cols, dtype=np.int64)[np.arange(b) % len(cols)] - norm.disc_start
            else:
                levels = self._draw_levels(b, rng)
            alpha, hot = self._generate(levels, gen)
            if not conditions:
                return norm.decode_hot(alpha, hot)
            ok = self._satisfies(alpha, hot, disc_pos, num, flag_pos)
            kept_a.append(alpha[ok][: n - have])
            kept_h.append(hot[ok][: n - have])
            have += len(kept_a[-1])
            if have >= n:
                break
        if have < n:  # bounded: overwrite the conditioned cells of the last round's rows
            alpha, hot = alpha[: n - have].copy(), hot[: n - have].copy()
            self._force(alpha, hot, disc_pos, num, flag_pos)
            kept_a.append(alpha)
            kept_h.append(hot)
        frame = norm.decode_hot(np.concatenate(kept_a), np.concatenate(kept_h))
        for col, (lo, hi) in num.items():  # decoding rounds; keep values inside the range
            frame[col] = frame[col].clip(lo, hi)
        return frame

    def _col_index(self, col: str) -> int:
        norm = self.normalizer_
        if col in norm.continuous_columns_:
            return norm.continuous_columns_.index(col)
        return norm.n_continuous + norm.discrete_columns_.index(col)

    def _values(self, alpha: np.ndarray, hot: np.ndarray, col: str) -> np.ndarray:
        norm = self.normalizer_
        i = norm.continuous_columns_.index(col)
        mode = hot[:, i] - norm.mode_starts_[i]
        return np.clip(alpha[:, i], -1, 1) * 4 * norm.stds_[i, mode] + norm.means_[i, mode]

    def _satisfies(self, alpha, hot, disc_pos, num, flag_pos) -> np.ndarray:
        ok = np.ones(len(hot), dtype=bool)
        for col, pos in disc_pos.items():
            ok &= hot[:, self._col_index(col)] == pos
        for col, (lo, hi) in num.items():
            v = self._values(alpha, hot, col)
            ok &= (v >= lo) & (v <= hi)
        for col, pos in flag_pos.items():
            ok &= hot[:, self._col_index(f"{col}{MISSING_SUFFIX}")] == pos
        return ok

    def _force(self, alpha, hot, disc_pos, num, flag_pos) -> None:
        norm = self.normalizer_
        for col, pos in disc_pos.items():
            hot[:, self._col_index(col)] = pos
        for col, pos in flag_pos.items():
            hot[:, self._col_index(f"{col}{MISSING_SUFFIX}")] = pos
        for col, (lo, hi) in num.items():
            i = norm.continuous_columns_.index(col)
            v = np.clip(self._values(alpha, hot, col), lo, hi)
            mode = hot[:, i] - norm.mode_starts_[i]
            a = (v - norm.means_[i, mode]) / (4 * norm.stds_[i, mode])
            # the clipped value may lie beyond its mode's reach: move to the nearest mode
            far = np.abs(a) > 1
            if far.any():
                active = norm.n_modes_[i]
                near = np.abs(v[far, None] - norm.means_[i, None, :active]).argmin(axis=1)
                hot[far, i] = norm.mode_starts_[i] + near
                a[far] = (v[far] - norm.means_[i, near]) / (4 * norm.stds_[i, near])
            alpha[:, i] = np.clip(a, -1, 1)

    # -- persistence ----------------------------------------------------------------------------
    def _save(self, directory: Path) -> None:
        state = {
            "generator": {k: v.cpu() for k, v in self.generator_.state_dict().items()},
            "options": asdict(self.options),
            "sampling_counts": self.sampling_counts_,
            "batch": self.batch_,
        }
        torch.save(state, directory / MODEL_FILE)
        with open(directory / "transformers.pkl", "wb") as fh:
            pickle.dump({"preparer": self.preparer_, "normalizer": self.normalizer_}, fh)

    def _load(self, directory: Path) -> TablePreparer:
        try:
            state = torch.load(directory / MODEL_FILE, map_location="cpu", weights_only=False)
            with open(directory / "transformers.pkl", "rb") as fh:
                parts = pickle.load(fh)
        except FileNotFoundError as exc:
            raise ModelError(f"{directory}: incomplete tabular_gan model ({exc.filename} missing)") from None
        opts = state["options"]
        opts["betas"] = tuple(opts["betas"])
        self.options = TabularGANOptions(**opts)
        self.normalizer_ = parts["normalizer"]
        self.device_ = torch.device(resolve_device(self.config.device))
        self.generator_ = self._make_generator(torch.Generator()).to(self.device_)
        self.generator_.load_state_dict(state["generator"])
        self.generator_.eval()
        self.sampling_counts_ = state["sampling_counts"]
        self.batch_ = state["batch"]
        return parts["preparer"]
