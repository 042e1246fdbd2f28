"""The loss object ``tabular_gan`` hands to :class:`~synthgen.training.loop.GANLoop`:
CTGAN's objective (logistic or WGAN with a lazy gradient penalty), and per-sample
logistic critic losses under differential privacy."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from synthgen.synthesizers.tabular_gan.networks import Generator, WideCritic
from synthgen.synthesizers.tabular_gan.options import TabularGANOptions
from synthgen.synthesizers.tabular_gan.sampling import CondSampler, SpanOps



class TabularGANLoss:
    """CTGAN's objective with one method per phase (see :mod:`synthgen.training.loop`).

    Non-private: real rows are picked by the conditioning level (training-by-sampling),
    critic loss logistic (or WGAN with a lazy gradient penalty). Private: real rows are
    Poisson-sampled and conditioned on their own level in a random column; the critic
    returns per-sample logistic losses for DP-SGD.

    ``poisson_mask(n)`` (required when ``private``): the boolean mask of the real rows
    entering a step, drawn from a *secret* generator
    (:meth:`synthgen.training.dp.CriticPrivacy.poisson_mask`), never from ``gen``, which
    is seeded from ``model.seed``: amplification by subsampling assumes the sample is
    secret. Under DP the logged ``loss_d`` is the critic's loss on the generated rows only
    (its loss on the real rows is not privatised).
    """

    def __init__(self, gen_net: Generator, critic: nn.Module, ops: SpanOps, sampler: CondSampler,
                 alpha: torch.Tensor, hot: torch.Tensor, batch: int, embedding_dim: int,
                 options: TabularGANOptions, gen: torch.Generator, private: bool = False,
                 sample_rate: float = 1.0, poisson_mask: Callable[[int], torch.Tensor] | None = None):
        if private and poisson_mask is None:
            raise ValueError("a private loss needs poisson_mask (the secret Poisson sample)")
        self.G, self.D, self.ops, self.s = gen_net, critic, ops, sampler
        self.alpha, self.hot = alpha, hot
        self.batch, self.emb, self.o, self.gen = batch, embedding_dim, options, gen
        self.private, self.q, self.poisson_mask = private, sample_rate, poisson_mask
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
        mask = self.poisson_mask(n)  # secret: never from self.gen
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
        # logged (losses.csv, MLflow, the public report): the generated rows' part only - the
        # real rows' loss is not privatised, so it must not leave the process
        return per_sample, {"loss_d": per_sample.detach()[len(rows):].mean()}

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
