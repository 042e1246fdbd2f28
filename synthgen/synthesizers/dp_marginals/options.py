"""The engine knobs of ``dp_marginals`` that params.yaml does not expose (the benchmark may
set them), and the family's defaults of the ``model`` section."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: ``model.*`` of ``dp_marginals`` when params leave a field unset (``epochs``, the cap on
#: adaptive rounds, is settled on the table: :func:`default_rounds`).
FAMILY_DEFAULTS: dict[str, Any] = {
    "batch_size": 1024,  # the generator's anchors: fixed latents whose mixture is the model (any size: rows are never batched)
    "generator_dim": [128, 128],  # as good as [256, 256] on penguins at epsilon 10, about 4x faster per step
    "embedding_dim": 64,  # width of the generator's Gaussian latent
    "lr": 3e-3,
}

ROUNDS_PER_COLUMN = 2  # model.epochs unset: this many adaptive rounds per column ...
MAX_DEFAULT_ROUNDS = 30  # ... but at most this many


def default_rounds(columns: int) -> int:
    """``model.epochs`` of ``dp_marginals`` when unset: :data:`ROUNDS_PER_COLUMN` rounds per
    column, at most :data:`MAX_DEFAULT_ROUNDS` (at least 1)."""
    return max(1, min(ROUNDS_PER_COLUMN * columns, MAX_DEFAULT_ROUNDS))


MIN_BINS, MAX_BINS = 10, 50  # model.bins unset: sqrt(train rows) / 4 bins per number, within these


def default_bins(rows: int) -> int:
    """``model.bins`` of ``dp_marginals`` when unset: ``sqrt(rows) / 4`` equal-width bins per
    numeric column, at least :data:`MIN_BINS` and at most :data:`MAX_BINS` - few bins on a
    small table, where finer cells drown in noise, more on a large one, where coarse bins
    blur the relations (measured in BENCHMARKS.md, "Private synthetic tables": 10 bins on
    penguins' 275 rows, 15 on credit_data's 3,563, 50 on diamonds' 43,153)."""
    return int(min(MAX_BINS, max(MIN_BINS, round(math.sqrt(max(rows, 0)) / 4))))


@dataclass
class DPMarginalsOptions:
    """Engine knobs not exposed in params.

    Attributes:
        measure_share: share of each adaptive round's budget spent on the Gaussian
            measurement; the rest goes to the exponential-mechanism selection. Default 0.9
            (AIM's ``alpha``).
        max_cells: the largest marginal (cells) a round may select. Default 10,000.
        anneal: halve the noise (and double the selection epsilon) of the following rounds
            when a measurement barely moved the model, as AIM does. Default True.
        init_steps: optimizer steps fitting the generator to the start's marginals. Default 300.
        round_steps: optimizer steps after each adaptive round (the fit continues from the
            previous round's weights). Default 100.
        final_steps: optimizer steps after the last round. Default 500.
        max_condition_draws: latent draws conditional sampling may try per call before it
            gives up with a ``ConditionError``. Default 10,000,000.
        target_share: with a ``data.target`` (and adaptive rounds), the share of the budget
            the start's pairs of the target with each column take together; the rounds
            share the rest. Default 0.65: AIM's even split gave them 20-30%, and at 0.5 /
            0.65 / 0.8 (one or three seeds each) penguins' TSTR ratio at epsilon 3 was
            0.89 / 0.92 / 0.93 against 0.86 and diamonds' quality at epsilon 1 0.944 /
            0.937 / 0.927 against 0.946 (one-off runs of a patched copy; BENCHMARKS.md,
            "Private synthetic tables", has the final family's runs).
    """

    measure_share: float = 0.9
    max_cells: int = 10_000
    anneal: bool = True
    init_steps: int = 300
    round_steps: int = 100
    final_steps: int = 500
    max_condition_draws: int = 10_000_000
    target_share: float = 0.65
