"""Differential privacy for GAN critics: DP-SGD with Opacus, its accounting, and the
privacy ledger that says what the budget covers.

Only the critic reads real rows; the generator is trained from the critic's output and
from public conditions, so it and everything sampled from it are post-processing.
:class:`CriticPrivacy` turns the critic's optimizer into DP-SGD:

* **Poisson sampling**: each real row enters a step independently with probability
  ``q = batch / n`` (:meth:`CriticPrivacy.poisson_mask`, drawn on the device from a
  secret generator, see below); no row is ever picked *by its category*, which is the
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

**Secret randomness.** Every draw the analysis assumes secret - the DP-SGD gradient
noise, the Poisson mask of real rows and the noise of the count release - comes from
its own ``torch.Generator`` seeded with 64 bits of OS entropy (:func:`secret_generator`,
``secrets.randbits``). Those seeds and generator states are never recorded: not in the
saved model, the manifest, MLflow or checkpoints (:meth:`CriticPrivacy.state_dict`
holds the accountant history and the already released noisy counts only). Whoever holds
the model directory therefore cannot regenerate the noise and subtract it. The price:
**a DP run is not bit-reproducible** - two runs with the same ``model.seed`` give
different models (sampling a saved model with a given seed still gives the same rows,
and non-private runs keep same-seed determinism). A run resumed from a checkpoint
restores the accountant history and the released counts (one release, charged once) and
draws fresh secret generators (:meth:`CriticPrivacy.load_state_dict`). The critic loss
logged under DP is its loss on the generated rows only (see the ``tabular_gan`` loss):
its loss on real rows would be a statistic of the real data outside the budget.

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

**The privacy ledger** (:meth:`CriticPrivacy.ledger`) lists everything about the real
rows that reaches the model, each item either charged to the budget or declared public:

* **Charged** (one accountant, composed): the level counts of every discrete column -
  including the missing level of categoricals and the ``<col>__missing`` flags of
  numeric columns, so missing rates are released here too - as one Gaussian-mechanism
  release (L2 sensitivity ``sqrt(#discrete columns)`` under add/remove of a row,
  :meth:`CriticPrivacy.noisy_counts`), and the DP-SGD steps of the critic. Each
  release's ``epsilon_share`` is the increase of the composed epsilon when it was
  added, in release order, so the shares sum to ``epsilon_spent``.
* **Declared public** (``data.public_bounds: true``): each categorical column's level
  set, each numeric column's range and value structure (point-mass values, decimals,
  the column it never exceeds; :func:`synthgen.data.structure.public_structure`),
  whether a column may be missing, constant values, and the number of rows - listed
  column by column. Nothing is fitted from the values
  under DP: continuous modes are evenly spaced over the public range, missing numbers
  are imputed with the range's midpoint, missing categories are a level of their own.
* **Not covered** (stated, not hidden): plain sentences in ``not_covered``.
"""

from __future__ import annotations

import functools
import logging
import math
import secrets
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from synthgen.errors import ConfigError

log = logging.getLogger(__name__)

GRAD_SAMPLE_MODES = ("ghost", "hooks", "functorch", "ew")

NOT_REPRODUCIBLE_BECAUSE = (
    "the DP-SGD noise, the Poisson sample of real rows and the count noise are drawn from generators "
    "seeded with OS entropy that is never recorded, so that nobody holding the model can regenerate "
    "and subtract the noise; the same model.seed gives a different model (sampling a saved model "
    "with a given seed still gives the same rows)"
)

#: What no differential privacy in synthgen covers: every DP family's ledger (``not_covered``) opens with these.
SCOPE_NOT_COVERED = (
    "The guarantee is per row (add or remove one row of the train split): a person with several rows "
    "is protected only as a group of rows, with a correspondingly weaker epsilon.",
    "Only the model directory and what is sampled from it carry the guarantee. Files made from the real "
    "rows outside the model - schema.json and the splits (ingest), validation.json, the full report.html "
    "and the metrics in MLflow - hold exact statistics of the real data and stay with the data owner. The "
    "published manifest, datasheet and public report carry the verdict and its validation scores: a few "
    "scalar scores computed on the real rows, outside the budget (the datasheet's schema table shows only "
    "what is declared public).",
)

#: What differential privacy here does not cover, in plain sentences (the ledger's ``not_covered``).
NOT_COVERED = (
    *SCOPE_NOT_COVERED,
    "The level sets are decided on the real train split before training (levels seen fewer than "
    "data.min_level_count times are pooled at ingest; column kinds are inferred from the values); "
    "they are used as the public domain, not released privately.",
    "Choosing among models or settings by their validation on real data (sweeps, re-runs until the "
    "verdict passes) spends privacy that no accountant here records.",
    "The noise comes from torch's pseudo-random generators seeded with 64 bits of OS entropy, not from a "
    "cryptographically secure generator, and floating-point attacks on the Gaussian sampler "
    "(Opacus' secure_mode) are not defended against.",
    "Wall-clock timings (epoch_seconds, train_seconds) vary with the secret Poisson sample sizes and are "
    "recorded unprotected: a side channel the analysis does not cover.",
)


def secret_generator(device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with 64 bits of OS entropy; the seed
    is not kept anywhere (see the module docstring)."""
    return torch.Generator(device=device).manual_seed(secrets.randbits(64))


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
        n_rows: number of real rows (public).
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
        device: where the secret generators of the gradient noise and the Poisson mask
            live (the critic's device). Default ``"cpu"``.

    The three secret generators (:attr:`noise_generator`, :attr:`sampling_generator`,
    :attr:`count_generator`) are made by :func:`secret_generator`; there is no way to
    seed them.
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
        device: torch.device | str = "cpu",
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
        self.device = torch.device(device)
        self.noise_generator = secret_generator(self.device)  # DP-SGD gradient noise
        self.sampling_generator = secret_generator(self.device)  # Poisson mask of real rows
        self.count_generator = secret_generator("cpu")  # noise of the level-count release
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
        self.released_counts: np.ndarray | None = None  # the noisy counts, once released
        self.on_restore: Any = None  # callable(counts) run when a checkpoint restores released_counts

    def reseed(self) -> None:
        """Draw fresh OS entropy into the three secret generators (in place, so the DP
        optimizer keeps its reference)."""
        for gen in (self.noise_generator, self.sampling_generator, self.count_generator):
            gen.manual_seed(secrets.randbits(64))

    # -- releases ----------------------------------------------------------------------
    @property
    def count_noise_std(self) -> float:
        """Standard deviation of the noise on each released count:
        ``histogram_noise * sqrt(n_discrete)`` (0 without discrete columns)."""
        return self.histogram_noise * math.sqrt(self.n_discrete) if self.n_discrete else 0.0

    def noisy_counts(self, counts: np.ndarray) -> np.ndarray:
        """Release level counts (all discrete columns, concatenated) with Gaussian noise of
        std :attr:`count_noise_std` from the secret :attr:`count_generator`; charged once
        to the accountant. The release happens once: later calls return it again
        (:attr:`released_counts`)."""
        if not self.n_discrete:
            return counts.astype(np.float64)
        if self.released_counts is not None:
            return self.released_counts
        noise = torch.randn(len(counts), generator=self.count_generator, dtype=torch.float64).numpy()
        self.accountant.history.append((self.histogram_noise, 1.0, 1))
        self._counts_released = True
        self.released_counts = counts.astype(np.float64) + noise * self.count_noise_std
        return self.released_counts

    def poisson_mask(self, n: int) -> torch.Tensor:
        """Which of ``n`` real rows enter this step: each independently with probability
        :attr:`sample_rate`, drawn from the secret :attr:`sampling_generator`."""
        return torch.rand(n, generator=self.sampling_generator, device=self.device) < self.sample_rate

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
                expected_batch_size=expected, loss_reduction="mean", generator=self.noise_generator,
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
                expected_batch_size=expected, loss_reduction="mean", generator=self.noise_generator,
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
        """The accountant history and the released (noisy) counts - never the secret
        generators' seeds or states."""
        released = self.released_counts
        return {"history": [tuple(h) for h in self.accountant.history], "counts_released": self._counts_released,
                "released_counts": None if released is None else released.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the accountant history and the released counts of a checkpoint (so the
        counts stay one release, charged once), then draw fresh secret generators; calls
        :attr:`on_restore` with the restored counts when both are set."""
        self.accountant.history = [tuple(h) for h in state["history"]]
        self._counts_released = state["counts_released"]
        if state.get("released_counts") is not None:
            self.released_counts = np.asarray(state["released_counts"], dtype=np.float64)
            if self.on_restore is not None:
                self.on_restore(self.released_counts)
        self.reseed()

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

    def ledger(self, public: list[dict[str, Any]], counts_what: str = "",
               not_covered: tuple[str, ...] | list[str] = NOT_COVERED) -> dict[str, Any]:
        """The privacy ledger, JSON-ready (see the module docstring).

        Args:
            public: the declared-public items, one dict per column and item
                (``{"column", "what": "domain" | "bounds" | "row count", "source", ...}``).
            counts_what: what the count release holds, in words.
            not_covered: plain sentences; default :data:`NOT_COVERED`.

        Returns:
            ``{"epsilon", "epsilon_spent", "delta", "accountant", "mechanism", "releases", "public",
            "not_covered", "reproducible": False, "not_reproducible_because"}``; each
            release has ``name``, ``mechanism``, its noise, ``epsilon_share`` (the increase
            of the composed epsilon when it was added; the shares sum to
            ``epsilon_spent``), ``share_of_budget`` and ``what``.
        """
        history = [tuple(h) for h in self.accountant.history]
        releases: list[dict[str, Any]] = []
        done: list[tuple[float, float, int]] = []
        before = 0.0
        if self._counts_released and history:
            done.append(history[0])
            after = epsilon_of(done, self.delta, self.kind)
            releases.append({
                "name": "level counts", "mechanism": "Gaussian mechanism",
                "noise_multiplier": self.histogram_noise, "sigma": self.count_noise_std,
                "l2_sensitivity": math.sqrt(self.n_discrete), "epsilon_share": after,
                "share_of_budget": after / self.epsilon,
                "what": counts_what or f"the counts of every level of {self.n_discrete} discrete columns",
            })
            before, history = after, history[1:]
        steps = int(sum(t for _, _, t in history))
        total = epsilon_of(done + history, self.delta, self.kind)
        releases.append({
            "name": "critic gradients", "mechanism": "DP-SGD (Poisson-subsampled Gaussian)",
            "noise_multiplier": self.noise_multiplier, "sigma": self.noise_multiplier * self.max_grad_norm,
            "sample_rate": self.sample_rate, "steps": steps, "max_grad_norm": self.max_grad_norm,
            "epsilon_share": total - before, "share_of_budget": (total - before) / self.epsilon,
            "what": "the critic's per-row clipped gradients on Poisson-sampled real rows; the generator "
                    "and every sampled row are post-processing of them",
        })
        return {
            "epsilon": self.epsilon,
            "epsilon_spent": total,
            "delta": self.delta,
            "accountant": self.kind,
            "mechanism": "DP-SGD on the GAN critic (Poisson-subsampled Gaussian, Opacus), with a Gaussian release "
                         "of the level counts; the generator is post-processing",
            "unit": "one row of the train split (add/remove)",
            "releases": releases,
            "public": list(public),
            "not_covered": list(not_covered),
            "reproducible": False,
            "not_reproducible_because": NOT_REPRODUCIBLE_BECAUSE,
        }
