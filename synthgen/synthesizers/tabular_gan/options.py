"""The engine knobs of ``tabular_gan`` that params.yaml does not expose (the benchmark may
set them): a leaf the loss and the synthesizer both read."""

from __future__ import annotations

from dataclasses import dataclass


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
