"""The privacy mechanisms of ``dp_marginals`` and their accounting under zero-concentrated
differential privacy (zCDP), with the record of every release (the privacy ledger).

* **Budget.** A target ``(epsilon, delta)`` becomes a zCDP budget ``rho`` by inverting the
  standard conversion ``epsilon = rho + 2 * sqrt(rho * ln(1/delta))`` (Bun & Steinke 2016):
  ``rho = (sqrt(ln(1/delta) + epsilon) - sqrt(ln(1/delta)))**2``, shrunk by a relative
  ``1e-9`` so that the reported epsilon never exceeds the target through rounding
  (:func:`rho_for`, :func:`epsilon_for`).
* **Gaussian mechanism** (:meth:`ZCDPBudget.gaussian`): a count table plus independent
  ``N(0, sigma**2)`` noise per cell. A marginal's L2 sensitivity under adding or removing
  one row is 1 (one cell changes by one), so a release costs ``rho = 1 / (2 sigma**2)``.
* **Exponential mechanism** (:meth:`ZCDPBudget.exponential`): picks candidate ``r`` with
  probability proportional to ``exp(epsilon * q_r / (2 * sensitivity))``, drawn as the
  argmax of the scaled scores plus Gumbel noise. It is ``epsilon``-DP and, having bounded
  range, ``epsilon**2 / 8``-zCDP (Cesar & Rogers 2021).
* zCDP composes by adding ``rho``; the reported epsilon is the conversion of the sum.

**Secret randomness.** Every Gaussian and Gumbel draw comes from one ``torch.Generator``
made by :func:`synthgen.training.dp.secret_generator` (64 bits of OS entropy, never
recorded), so nobody holding the model, the ledger or the seed can regenerate the noise.
A release that would exceed the budget is refused (``RuntimeError``: a bug, not a user
mistake), so the spent ``rho`` never passes the budget.

The ledger (:meth:`ZCDPBudget.ledger`) has the format of
:meth:`synthgen.training.dp.CriticPrivacy.ledger` (``releases`` with ``name``,
``mechanism``, noise, ``epsilon_share``, ``share_of_budget``, ``what``; ``public``,
``not_covered``), plus each release's ``rho`` and the totals ``rho`` and ``rho_budget``,
so that epsilon can be recomputed by hand from the recorded parameters alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from synthgen.errors import ConfigError
from synthgen.training.dp import secret_generator

GAUSSIAN = "Gaussian mechanism"
EXPONENTIAL = "exponential mechanism"
SLACK = 1e-9  # relative margin kept below the budget: the reported epsilon stays <= the target


def rho_for(epsilon: float, delta: float) -> float:
    """The largest zCDP ``rho`` whose conversion :func:`epsilon_for` is ``epsilon`` at ``delta``.

    Raises:
        ConfigError: ``epsilon`` not > 0, or ``delta`` not in (0, 1).
    """
    if epsilon is None or not epsilon > 0:
        raise ConfigError(f"privacy.epsilon must be > 0, got {epsilon!r}")
    if delta is None or not 0 < delta < 1:
        raise ConfigError(f"privacy.delta must be in (0, 1), got {delta!r}")
    log_term = math.log(1.0 / delta)
    return (math.sqrt(log_term + epsilon) - math.sqrt(log_term)) ** 2


def epsilon_for(rho: float, delta: float) -> float:
    """``epsilon = rho + 2 * sqrt(rho * ln(1/delta))``: the (epsilon, delta)-DP that
    ``rho``-zCDP implies (Bun & Steinke 2016, Proposition 1.3)."""
    return rho + 2.0 * math.sqrt(max(rho, 0.0) * math.log(1.0 / delta)) if rho > 0 else 0.0


class ZCDPBudget:
    """A zCDP budget, the noise of every release drawn from it, and the releases made.

    Args:
        epsilon: target epsilon, > 0.
        delta: target delta in (0, 1).

    Attributes:
        rho_budget: the budget, :func:`rho_for` less a relative :data:`SLACK`.
        releases: one dict per release, in order (see :meth:`ledger`).
    """

    def __init__(self, epsilon: float, delta: float):
        self.epsilon = float(epsilon)
        self.delta = float(delta)
        self.rho_budget = rho_for(self.epsilon, self.delta) * (1.0 - SLACK)
        self.releases: list[dict[str, Any]] = []
        self._noise = secret_generator("cpu")  # Gaussian noise and Gumbel draws; never recorded

    @property
    def rho_spent(self) -> float:
        """The ``rho`` of every release so far, summed."""
        return float(sum(r["rho"] for r in self.releases))

    @property
    def remaining(self) -> float:
        """``rho`` still to spend (never negative)."""
        return max(self.rho_budget - self.rho_spent, 0.0)

    @property
    def epsilon_spent(self) -> float:
        return epsilon_for(self.rho_spent, self.delta)

    def _charge(self, release: dict[str, Any]) -> None:
        if self.rho_spent + release["rho"] > self.rho_budget * (1.0 + 1e-12):
            raise RuntimeError(f"release {release['name']!r} (rho {release['rho']:.3g}) would exceed the "
                               f"budget (spent {self.rho_spent:.3g} of {self.rho_budget:.3g})")
        self.releases.append(release)

    def gaussian(self, counts: np.ndarray, sigma: float, name: str, what: str) -> np.ndarray:
        """Release ``counts`` (a marginal: L2 sensitivity 1) plus ``N(0, sigma**2)`` per cell.

        Returns:
            The noisy counts (float64, same shape).
        """
        sigma = float(sigma)
        release = {"name": name, "mechanism": GAUSSIAN, "sigma": sigma, "l2_sensitivity": 1.0,
                   "noise_multiplier": sigma, "rho": 1.0 / (2.0 * sigma * sigma), "cells": int(np.size(counts)),
                   "what": what}
        self._charge(release)
        noise = torch.randn(int(np.size(counts)), generator=self._noise, dtype=torch.float64).numpy()
        return np.asarray(counts, dtype=np.float64).reshape(-1) + sigma * noise

    def exponential(self, scores: np.ndarray, epsilon: float, sensitivity: float, name: str,
                    describe: Callable[[int], str]) -> int:
        """Pick an index of ``scores`` (quality scores of sensitivity ``sensitivity``) with
        probability proportional to ``exp(epsilon * score / (2 * sensitivity))``.

        Args:
            describe: the release's ``what`` from the chosen index.

        Returns:
            The chosen index. The release records the candidate count and the choice, not
            the scores.
        """
        epsilon = float(epsilon)
        release = {"name": name, "mechanism": EXPONENTIAL, "epsilon": epsilon, "sensitivity": float(sensitivity),
                   "rho": epsilon * epsilon / 8.0, "candidates": int(len(scores)), "what": ""}
        self._charge(release)
        u = torch.rand(len(scores), generator=self._noise, dtype=torch.float64).numpy()
        gumbel = -np.log(-np.log(np.clip(u, 1e-300, 1.0 - 1e-16)))
        choice = int(np.argmax(epsilon * np.asarray(scores, dtype=np.float64) / (2.0 * sensitivity) + gumbel))
        release["what"] = describe(choice)
        return choice

    def ledger(self, public: list[dict[str, Any]], not_covered: list[str] | tuple[str, ...],
               mechanism: str, not_reproducible_because: str) -> dict[str, Any]:
        """The privacy ledger, JSON-ready, in the format of
        :meth:`synthgen.training.dp.CriticPrivacy.ledger`.

        Each release gets ``epsilon_share`` (the increase of the converted epsilon when it was
        added, in release order: the shares add up to ``epsilon_spent``) and
        ``share_of_budget``; the ledger adds ``mechanism``, ``rho`` (spent), ``rho_budget``
        and ``conversion`` (the formula from rho to epsilon).
        """
        releases, before, rho = [], 0.0, 0.0
        for release in self.releases:
            rho += release["rho"]
            after = epsilon_for(rho, self.delta)
            releases.append({**release, "epsilon_share": after - before, "share_of_budget": (after - before) / self.epsilon})
            before = after
        return {
            "epsilon": self.epsilon,
            "epsilon_spent": self.epsilon_spent,
            "delta": self.delta,
            "accountant": "zCDP",
            "mechanism": mechanism,
            "rho": self.rho_spent,
            "rho_budget": self.rho_budget,
            "conversion": "epsilon = rho + 2 * sqrt(rho * ln(1 / delta)); rho adds up over releases "
                          "(Gaussian: l2_sensitivity**2 / (2 * sigma**2); exponential: epsilon**2 / 8)",
            "unit": "one row of the train split (add/remove)",
            "releases": releases,
            "public": list(public),
            "not_covered": list(not_covered),
            "reproducible": False,
            "not_reproducible_because": not_reproducible_because,
        }
