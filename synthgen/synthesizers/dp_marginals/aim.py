"""Which marginals ``dp_marginals`` measures, and with how much of the budget: AIM's adaptive
loop (McKenna et al., VLDB 2022) with a cap on rounds.

The workload ``W`` is every ``max_order``-way marginal of the ``d`` attributes (every
attribute set of that size); the candidates are every 2- to ``max_order``-way attribute set
of at most ``max_cells`` cells. With ``R`` rounds (``model.epochs``) and a measurement share
``alpha`` (0.9), the budget ``rho`` is cut into ``T = R + alpha * m`` units (``m``: the
measurements of the start):

1. **The start.** Without a target, every attribute's counts (its one-way marginal); with
   a target (``data.target``), the 2-way marginal of the target with each other attribute
   instead (the target's own counts when no pair is small enough), so the relation a
   downstream model learns is measured from the start and every attribute's counts are
   still known (by summing out the target). ``m`` measurements (``d`` or ``d - 1``), each
   with the Gaussian mechanism at ``sigma = sqrt(T / (2 * alpha * rho))`` (``alpha * rho /
   T`` each, ``T = R + alpha * m``), and the generator is fitted to them. With a target
   the start's pairs instead take ``target_share`` of ``rho`` together (``sigma =
   sqrt(m / (2 * target_share * rho))``) and the rounds' units are cut from the rest
   (``T = R``): the pairs are what a downstream model learns from, and measured at AIM's
   even share they were the noisiest part of the fit (see ``DPMarginalsOptions.target_share``).
2. **Rounds** ``t = 1 .. R``, each spending one unit ``rho / T``: the exponential mechanism
   with ``epsilon_t = sqrt(8 * (1 - alpha) * rho / T)`` picks the candidate ``r`` with AIM's
   quality score::

       q_r = w_r * ( ||M_r(D) - n * p_r||_1  -  sqrt(2 / pi) * sigma_t * cells_r )

   (``M_r(D)``: the real counts; ``p_r``: the current model's marginal; the second term is
   the expected L1 size of the noise ``r`` would be measured with, so large marginals must
   be worth their noise; ``w_r = sum over s in W of |r & s|``, and the score's
   sensitivity is ``max_r w_r``). The chosen marginal is measured at ``sigma_t`` and the
   generator refitted on all measurements so far.
3. **Annealing** (``anneal``): when a measurement moved the model's marginal on ``r`` by
   less than the expected noise (``sqrt(2 / pi) * sigma_t * cells_r`` in L1), the noise
   is halved and the selection epsilon doubled for the rounds after (four times the
   budget per round).
4. **Termination.** The round that would leave less than two rounds' budget - and the
   ``R``-th round at the latest - spends all that remains (``alpha`` of it measuring), so
   the whole budget is used and never exceeded.

Without candidates (one attribute) or with ``R = 0`` the start's marginals take the whole
budget. True marginals are counted once per attribute set and kept; they reach nothing
but the two mechanisms. Progress goes to the callbacks as one epoch per round (loss,
sigma, epsilon and rho spent so far, cells of the measured marginal); the scores, which
are statistics of the real rows, are never logged.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from synthgen.synthesizers.dp_marginals.generator import MarginalFitter, Measurement
from synthgen.synthesizers.dp_marginals.mechanisms import ZCDPBudget
from synthgen.synthesizers.dp_marginals.options import DPMarginalsOptions
from synthgen.training.callbacks import CallbackList

log = logging.getLogger(__name__)

NOISE_L1 = math.sqrt(2.0 / math.pi)  # E|N(0, 1)|


@dataclass
class AIMResult:
    """What the loop released: the measurements (in order) and the rounds run."""

    measurements: list[Measurement]
    rounds_run: int
    last_loss: float


def candidates(sizes: list[int], max_order: int, max_cells: int) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """The candidate attribute sets and their workload weights ``w_r = sum_{s in W} |r & s|``
    (``W``: every ``max_order``-way set, or the one set of all attributes when fewer)."""
    d = len(sizes)
    order = min(max_order, d)
    cands = [r for k in range(2, order + 1) for r in itertools.combinations(range(d), k)
             if math.prod(sizes[a] for a in r) <= max_cells]
    # each attribute lies in comb(d - 1, order - 1) workload sets
    weights = np.array([len(r) * math.comb(d - 1, order - 1) for r in cands], dtype=float)
    return cands, weights


class TrueMarginals:
    """The real counts of attribute sets, counted once and kept (read only by mechanisms)."""

    def __init__(self, codes: np.ndarray, sizes: list[int]):
        self.codes, self.sizes, self._cache = codes, sizes, {}

    def __call__(self, attrs: tuple[int, ...]) -> np.ndarray:
        if attrs not in self._cache:
            shape = tuple(self.sizes[a] for a in attrs)
            flat = np.ravel_multi_index(tuple(self.codes[:, a] for a in attrs), shape)
            self._cache[attrs] = np.bincount(flat, minlength=math.prod(shape)).astype(np.float64)
        return self._cache[attrs]


def start_sets(sizes: list[int], target: int | None, max_cells: int) -> list[tuple[int, ...]]:
    """The attribute sets measured first: every one-way marginal, or with a ``target`` the
    pair (target, attribute) for every other attribute whose pair has at most ``max_cells``
    cells (an attribute without one: its one-way marginal; the target's own counts only
    when no pair was measured)."""
    if target is None:
        return [(a,) for a in range(len(sizes))]
    sets: list[tuple[int, ...]] = []
    for a in range(len(sizes)):
        if a != target:
            sets.append(tuple(sorted((a, target))) if sizes[a] * sizes[target] <= max_cells else (a,))
    if not any(target in r for r in sets):
        sets.append((target,))
    return sets


def run_aim(codes: np.ndarray, sizes: list[int], names: list[str], budget: ZCDPBudget, fitter: MarginalFitter,
            rounds: int, max_order: int, options: DPMarginalsOptions, callbacks: CallbackList,
            label: Callable[[tuple[int, ...]], str] | None = None, target: int | None = None) -> AIMResult:
    """Measure the start's marginals, then up to ``rounds`` adaptively selected ones, fitting
    ``fitter`` after each (see the module docstring).

    Args:
        codes: the real rows' codes, ``(rows, attributes)``.
        sizes, names: codes per attribute and the attribute (column) names.
        budget: the zCDP budget every release is charged to.
        fitter: the generator, refitted after each measurement.
        rounds: the cap on adaptive rounds.
        max_order: the largest marginals measured (2 or 3).
        options: engine knobs (measurement share, cell cap, annealing, step counts).
        callbacks: get ``on_epoch_end(round, logs)`` per round.
        label: names an attribute set in the ledger; default: its column names.
        target: the target attribute's index (its pairs are measured first), or None.
    """
    n = len(codes)
    label = label or (lambda attrs: " x ".join(names[a] for a in attrs))
    truth = TrueMarginals(codes, sizes)
    alpha = options.measure_share
    cands, weights = candidates(sizes, max_order, options.max_cells)
    rounds = rounds if cands else 0
    rho = budget.remaining
    first = start_sets(sizes, target, options.max_cells)
    units = rounds + alpha * len(first)
    sigma = math.sqrt(units / (2 * alpha * rho)) if rounds else math.sqrt(len(first) / (2 * rho))
    epsilon = math.sqrt(8 * (1 - alpha) * rho / units) if rounds else 0.0
    targeted = target is not None and rounds > 0
    if targeted:  # the target's pairs take target_share of the budget
        sigma = math.sqrt(len(first) / (2 * options.target_share * rho))
    measurements: list[Measurement] = []
    for r in first:
        counts = truth(r)
        values = budget.gaussian(counts, sigma, f"{len(r)}-way {label(r)}",
                                 f"the counts of the {counts.size} cells of {label(r)}")
        measurements.append(Measurement(r, values, sigma))
    loss = fitter.fit(measurements, options.init_steps)
    log.info("dp_marginals: %d first marginals measured (%s; sigma %.3g), loss %.3g", len(first),
             "one-way" if target is None else f"pairs with {names[target]!r}", sigma, loss)
    if targeted:  # the rounds cut the rest into R units
        rest = budget.remaining
        sigma = math.sqrt(rounds / (2 * alpha * rest))
        epsilon = math.sqrt(8 * (1 - alpha) * rest / rounds)
    sensitivity = float(weights.max()) if len(weights) else 1.0
    done = 0
    for t in range(rounds):
        remaining = budget.remaining
        last = t == rounds - 1 or remaining < 2 * (1 / (2 * sigma ** 2) + epsilon ** 2 / 8)
        if last:
            sigma = math.sqrt(1 / (2 * alpha * remaining))
            epsilon = math.sqrt(8 * (1 - alpha) * remaining)
        cells = np.array([truth(r).size for r in cands], dtype=float)
        estimates = [n * fitter.marginal(r) for r in cands]
        errors = np.array([np.abs(truth(r) - est).sum() for r, est in zip(cands, estimates)])
        scores = weights * (errors - NOISE_L1 * sigma * cells)
        pick = budget.exponential(scores, epsilon, sensitivity, f"round {t + 1} selection",
                                  lambda i: f"the choice of {label(cands[i])} among {len(cands)} candidate marginals")
        r = cands[pick]
        values = budget.gaussian(truth(r), sigma, f"round {t + 1} {label(r)}",
                                 f"the counts of the {int(cells[pick])} cells of {label(r)}")
        measurements.append(Measurement(r, values, sigma))
        before = estimates[pick]
        loss = fitter.fit(measurements, options.round_steps)
        moved = np.abs(n * fitter.marginal(r) - before).sum()
        used_sigma = sigma
        if options.anneal and not last and moved <= NOISE_L1 * sigma * cells[pick]:
            sigma, epsilon = sigma / 2, epsilon * 2
        done = t + 1
        callbacks.on_epoch_end(t, {"loss": loss, "sigma": used_sigma, "cells": float(cells[pick]),
                                   "rho_spent": budget.rho_spent, "epsilon_spent": budget.epsilon_spent})
        if last:
            break
    loss = fitter.fit(measurements, options.final_steps)
    return AIMResult(measurements, done, loss)
