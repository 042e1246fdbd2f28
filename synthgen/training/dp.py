"""Differential privacy for GAN critics: DP-SGD with Opacus, and its accounting.

Only the critic reads real rows; the generator is trained from the critic's output and
from public conditions, so it and everything sampled from it are post-processing.
:class:`CriticPrivacy` turns the critic's optimizer into DP-SGD:

* **Poisson sampling**: each real row enters a step independently with probability
  ``q = batch / n`` (the loss object draws the mask on the device with a seeded
  ``torch.Generator``); no row is ever picked *by its category*, which is the
  uniform sampling the accountant assumes.
* **Per-sample clipping** to ``max_grad_norm`` and Gaussian noise
  ``N(0, (sigma * max_grad_norm)^2)`` added once per step to the summed gradient, by an
  Opacus ``DPOptimizer``. Per-sample gradients come from Opacus' grad-sample modes:
  ``ghost`` (fast gradient / ghost clipping: two plain backward passes, no per-sample
  gradient tensors; the default and the fastest for MLP critics), ``hooks``,
  ``functorch`` or ``ew`` (expanded weights).
* **Accounting**: an Opacus RDP (default) or PRV accountant records every step;
  :meth:`CriticPrivacy.allows` tells the loop whether one more epoch stays within
  ``epsilon``, so training stops *before* the budget would be exceeded.

One step's critic batch is the Poisson-sampled real rows *and* as many generated rows,
fed through one forward pass and one noisy optimizer step. The generated rows depend
only on already released parameters and public conditions; clipping them is harmless
and they are not charged - the step is charged once, at rate ``q`` (adding noise in a
second step for the fake half would double-charge).

**No gradient penalty under DP.** The WGAN-GP penalty needs a double backward through
interpolates of real and fake rows, which Opacus' per-sample machinery does not support
(and computing it outside would leak real rows unclipped). The private critic is
therefore trained with the logistic (non-saturating) GAN loss, whose per-sample
gradient is bounded by the sigmoid and then clipped; per-sample clipping plus noise
also keeps the critic smooth, the job the penalty does in the non-private model. The
same loss without a penalty is what smartnoise's DP-CTGAN uses.

What else touches the data, and how it is treated (documented in the engine too):

* **Charged to the budget**: the category frequencies used to draw the generator's
  conditional vectors - one Gaussian-mechanism release of every discrete column's
  counts (L2 sensitivity ``sqrt(#discrete columns)`` under add/remove of a row),
  composed with DP-SGD in the same accountant (:meth:`CriticPrivacy.noisy_counts`).
* **Declared public** (``data.public_bounds: true``): the category sets and the
  numeric ranges of the schema, and the number of rows. Continuous modes are *not*
  fitted from the values under DP: they are evenly spaced over the public range.
* **Not covered** (stated, not hidden): the preparer's median imputation of missing
  numbers (replaced here by the midpoint of the public range before training), and the
  top-``max_categories`` level selection and rare-level frequencies of columns with more
  levels than ``data.max_categories`` - set ``max_categories`` above the column's
  cardinality, or treat those columns as public.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from synthgen.errors import ConfigError

log = logging.getLogger(__name__)

GRAD_SAMPLE_MODES = ("ghost", "hooks", "functorch", "ew")


def _accountant(kind: str) -> Any:
    from opacus.accountants import PRVAccountant, RDPAccountant

    if kind == "rdp":
        return RDPAccountant()
    if kind == "prv":
        return PRVAccountant()
    raise ConfigError(f"privacy.accountant: {kind!r} is not one of 'rdp', 'prv'")


#: RDP orders: integers only (Opacus' fractional orders cost ~100x more to evaluate and
#: tighten the bound by a few percent at most).
RDP_ORDERS = [1.25, 1.5, 1.75] + [float(a) for a in range(2, 64)] + [80.0, 96.0, 128.0, 192.0, 256.0, 512.0, 1024.0]


@functools.lru_cache(maxsize=4096)
def _epsilon_cached(history: tuple[tuple[float, float, int], ...], delta: float, kind: str) -> float:
    acc = _accountant(kind)
    acc.history = list(history)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the")
        if kind == "rdp":
            return float(acc.get_epsilon(delta, alphas=RDP_ORDERS))
        return float(acc.get_epsilon(delta))


def epsilon_of(history: list[tuple[float, float, int]], delta: float, kind: str = "rdp") -> float:
    """Epsilon spent by a history of ``(noise_multiplier, sample_rate, steps)`` entries."""
    if not history:
        return 0.0
    return _epsilon_cached(tuple((float(s), float(q), int(t)) for s, q, t in history), float(delta), kind)


def _calibrate(make_history: Any, target: float, delta: float, kind: str) -> float:
    """Smallest noise multiplier (bisection) whose history spends at most ``target``."""
    lo, hi = 0.05, 1.0
    while epsilon_of(make_history(hi), delta, kind) > target:
        hi *= 2
        if hi > 1e4:
            raise ConfigError(f"privacy.epsilon={target}: no noise level reaches this budget")
    for _ in range(40):
        mid = (lo + hi) / 2
        if epsilon_of(make_history(mid), delta, kind) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-3 * hi:
            break
    return hi


class CriticPrivacy:
    """DP-SGD for a GAN critic (see the module docstring for what is charged).

    Args:
        epsilon: total budget, > 0.
        delta: target delta; ``None`` -> ``1 / (10 * n_rows)``.
        max_grad_norm: per-sample clipping bound. Default 1.0.
        n_rows: number of real rows.
        batch_size: expected number of real rows per step (``q = batch_size / n_rows``).
        planned_steps: steps the run would take at full length (used to calibrate
            the noise when ``noise_multiplier`` is ``None``).
        n_discrete: discrete columns whose counts are released (0: none).
        accountant: ``"rdp"`` (default) or ``"prv"``.
        noise_multiplier: fixed DP-SGD noise; ``None`` -> calibrated so that
            ``planned_steps`` spend ``epsilon``. With a fixed value training stops
            early once the next epoch would exceed the budget.
        grad_sample_mode: ``"ghost"`` (default), ``"hooks"``, ``"functorch"``, ``"ew"``.
        histogram_share: share of epsilon the count release alone may spend.
            Default 0.1.
        generator: torch generator of the DP noise (reproducible runs).
    """

    def __init__(
        self,
        epsilon: float,
        delta: float | None,
        max_grad_norm: float,
        n_rows: int,
        batch_size: int,
        planned_steps: int,
        n_discrete: int = 0,
        accountant: str = "rdp",
        noise_multiplier: float | None = None,
        grad_sample_mode: str = "ghost",
        histogram_share: float = 0.1,
        generator: torch.Generator | None = None,
    ):
        if epsilon is None or not epsilon > 0:
            raise ConfigError(f"privacy.epsilon must be > 0, got {epsilon!r}")
        if grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise ConfigError(f"privacy.grad_sample_mode: {grad_sample_mode!r} is not one of {GRAD_SAMPLE_MODES}")
        self.epsilon = float(epsilon)
        self.delta = float(delta) if delta is not None else 1.0 / (10 * n_rows)
        if self.delta >= 1.0 / n_rows:
            log.warning("privacy.delta=%g is not below 1/n=%g", self.delta, 1.0 / n_rows)
        self.max_grad_norm = float(max_grad_norm)
        self.n_rows = n_rows
        self.sample_rate = min(1.0, batch_size / n_rows)
        self.expected_real = max(1, round(self.sample_rate * n_rows))
        self.kind = accountant
        self.grad_sample_mode = grad_sample_mode
        self.generator = generator
        self.accountant = _accountant(accountant)
        self.n_discrete = n_discrete
        self.histogram_noise = 0.0
        if n_discrete:
            target_h = histogram_share * self.epsilon
            self.histogram_noise = _calibrate(lambda s: [(s, 1.0, 1)], target_h, self.delta, self.kind)
        base = [(self.histogram_noise, 1.0, 1)] if n_discrete else []
        if noise_multiplier is None:
            q, t = self.sample_rate, max(1, planned_steps)
            noise_multiplier = _calibrate(lambda s: base + [(s, q, t)], self.epsilon, self.delta, self.kind)
        self.noise_multiplier = float(noise_multiplier)
        self._counts_released = False

    # -- releases ----------------------------------------------------------------------
    def noisy_counts(self, counts: np.ndarray) -> np.ndarray:
        """Release level counts (all discrete columns, concatenated) with Gaussian noise
        ``histogram_noise * sqrt(n_discrete)``; charged once to the accountant."""
        if not self.n_discrete:
            return counts.astype(np.float64)
        std = self.histogram_noise * math.sqrt(self.n_discrete)
        noise = torch.randn(len(counts), generator=self.generator, dtype=torch.float64).numpy() * std
        if not self._counts_released:
            self.accountant.history.append((self.histogram_noise, 1.0, 1))
            self._counts_released = True
        return counts.astype(np.float64) + noise

    # -- wiring --------------------------------------------------------------------------
    def wrap(self, critic: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[nn.Module, torch.optim.Optimizer]:
        """Return the critic with per-sample gradient hooks and its DP optimizer."""
        expected = 2 * self.expected_real  # real rows + as many generated rows
        if self.grad_sample_mode == "ghost":
            from opacus.grad_sample import GradSampleModuleFastGradientClipping
            from opacus.optimizers import DPOptimizerFastGradientClipping

            module = GradSampleModuleFastGradientClipping(
                critic, batch_first=True, loss_reduction="mean", max_grad_norm=self.max_grad_norm,
                use_ghost_clipping=True,
            )
            opt = DPOptimizerFastGradientClipping(
                optimizer, noise_multiplier=self.noise_multiplier, max_grad_norm=self.max_grad_norm,
                expected_batch_size=expected, loss_reduction="mean", generator=self.generator,
            )
        else:
            from opacus.grad_sample.utils import get_gsm_class
            from opacus.optimizers import DPOptimizer

            cls = get_gsm_class(self.grad_sample_mode)
            kwargs: dict[str, Any] = {"batch_first": True, "loss_reduction": "mean"}
            if self.grad_sample_mode == "functorch":
                kwargs["force_functorch"] = True
            module = cls(critic, **kwargs)
            opt = DPOptimizer(
                optimizer, noise_multiplier=self.noise_multiplier, max_grad_norm=self.max_grad_norm,
                expected_batch_size=expected, loss_reduction="mean", generator=self.generator,
            )
        opt.attach_step_hook(self.accountant.get_optimizer_hook_fn(sample_rate=self.sample_rate))
        self.module, self.optimizer = module, opt
        return module, opt

    def set_hooks(self, enabled: bool) -> None:
        """Switch per-sample hooks off while the generator back-propagates through the critic."""
        if enabled:
            self.module.enable_hooks()
        else:
            self.module.disable_hooks()

    def backward(self, loss_per_sample: torch.Tensor) -> None:
        """Backward pass of a per-sample critic loss (shape ``(batch,)``)."""
        if self.grad_sample_mode == "ghost":
            from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping

            with warnings.catch_warnings():  # the critic's inputs need no gradient: expected
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                DPTensorFastGradientClipping(self.module, self.optimizer, loss_per_sample, "mean").backward()
        else:
            loss_per_sample.mean().backward()

    # -- budget ----------------------------------------------------------------------------
    @property
    def epsilon_spent(self) -> float:
        return epsilon_of(self.accountant.history, self.delta, self.kind)

    def allows(self, steps: int) -> bool:
        """Whether ``steps`` more critic steps keep the spent epsilon within budget."""
        history = list(self.accountant.history) + [(self.noise_multiplier, self.sample_rate, steps)]
        return epsilon_of(history, self.delta, self.kind) <= self.epsilon

    def state_dict(self) -> dict[str, Any]:
        return {"history": [tuple(h) for h in self.accountant.history], "counts_released": self._counts_released}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.accountant.history = [tuple(h) for h in state["history"]]
        self._counts_released = state["counts_released"]

    def summary(self) -> dict[str, float]:
        return {
            "epsilon_spent": self.epsilon_spent,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "max_grad_norm": self.max_grad_norm,
            "histogram_noise": self.histogram_noise,
        }
