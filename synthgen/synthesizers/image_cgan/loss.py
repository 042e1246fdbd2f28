"""The loss object ``image_cgan`` hands to :class:`~synthgen.training.loop.GANLoop`: hinge
loss with augmentation at the discriminator's input, the optional R1 penalty, and the
per-step work (ADA's ``p`` controller, the generator EMA) in ``after_step``."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from synthgen.training.distributed import current as process_group


# -- the loss object of GANLoop ------------------------------------------------------------------------
class ImageGANLoss:
    """Hinge loss with augmentation at D's input, R1, ADA's controller and the EMA update.

    ``synth`` is the :class:`~synthgen.synthesizers.image_cgan.synthesizer.ImageCGANSynthesizer`
    being fitted (not imported here: it imports this module)."""

    def __init__(self, synth: Any, reals: torch.Tensor, labels: torch.Tensor,
                 class_probs: torch.Tensor, batch: int):
        self.s = synth
        self.reals, self.labels, self.class_probs, self.batch = reals, labels, class_probs, batch
        self.cfg = synth.config
        self.amp = synth.device_.type == "cuda"
        self.group = process_group()  # under torchrun: ADA's r_t is measured over every rank

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp) if self.amp else _nullcontext()

    def _real(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.reals), (self.batch,), generator=self.s.gen_, device=self.reals.device)
        return self.reals[idx], self.labels[idx]

    def _fake(self) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.s
        z = torch.randn(self.batch, self.cfg.embedding_dim, generator=s.gen_, device=s.device_)
        y = torch.multinomial(self.class_probs, self.batch, replacement=True, generator=s.gen_)
        return s.generator_(z, y), y

    def critic_loss(self, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.s
        real, y_real = self._real()
        with self._autocast():
            with torch.no_grad():
                fake, y_fake = self._fake()
            d_real = s.critic_(s.augment_(real, s.gen_), y_real)
            d_fake = s.critic_(s.augment_(fake.detach(), s.gen_), y_fake)
        s.augment_.accumulate(d_real, d_fake)
        loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
        logs = {"loss_d": loss.detach(), "d_real": d_real.detach().mean(), "d_fake": d_fake.detach().mean(),
                "ada_rt": s.augment_.signs(d_real, d_fake).mean(), "ada_p": s.augment_.p.detach().clone()}
        if self.cfg.r1_gamma > 0:  # on non-augmented reals, eager float32 (double backward)
            x = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(s.critic_(x, y_real).sum(), x, create_graph=True)
            r1 = grad.square().sum(dim=(1, 2, 3)).mean()
            loss = loss + self.cfg.r1_gamma / 2 * r1
            logs["r1"] = r1.detach()
        return loss, logs

    def generator_loss(self, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.s
        with self._autocast():
            fake, y_fake = self._fake()
            loss = -s.critic_(s.augment_(fake, s.gen_), y_fake).mean()
        return loss, {"loss_g": loss.detach()}

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        s = self.s
        if (step + 1) % self.cfg.ada_interval == 0 and s.augment_.mode == "ada":
            self.group.sum_(s.augment_.rt_sum, s.augment_.rt_count)
            s.augment_.adjust(self.batch * self.group.world_size * s.options.critic_steps)
            s.ada_trace_.append((step + 1, s.augment_.p.clone(), s.augment_.rt.clone()))  # read per epoch
        decay = min(self.cfg.ema, (1 + step) / (10 + step)) if self.cfg.ema > 0 else 0.0
        for p_ema, p in zip(s.ema_.parameters(), s.generator_.parameters()):
            p_ema.lerp_(p, 1 - decay)
        for b_ema, b in zip(s.ema_.buffers(), s.generator_.buffers()):
            b_ema.copy_(b)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
