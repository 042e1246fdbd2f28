"""``model.name: ctgan`` - the ``ctgan`` package's CTGAN behind synthgen's interface.

The reference implementation, kept as a backend and as the benchmark baseline. ctgan
is BUSL-1.1 licensed and slow to import (~3.5 s), so it is imported only when this
backend is used. CTGAN has no per-epoch hooks: its recorded per-epoch losses are
replayed to the callbacks after ``fit``. It has no native exact conditioning, so
conditions go through :class:`~synthgen.synthesizers.tabular.TabularSynthesizer`'s bounded
rejection sampling.

ctgan draws the conditional vector at *sampling* time from log-frequencies of the
levels, which over-represents rare levels; missing-value indicators are such levels, so
this backend uses ``joint_missing = False`` (missingness drawn independently at the real
rate) - measured on penguins: 0.4% missing numbers came back as 5-9% with indicators.
"""

from __future__ import annotations

import logging
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthgen.synthesizers.tabular import TabularSynthesizer
from synthgen.training.callbacks import CallbackList
from synthgen.training.device import resolve_device

log = logging.getLogger(__name__)


class CTGANSynthesizer(TabularSynthesizer):
    """Wraps ``ctgan.CTGAN`` (0.12). ``model.*`` map onto CTGAN's arguments."""

    name = "ctgan"
    joint_missing = False

    def _batch_size(self) -> int:
        step = self.config.pac * 2 // math.gcd(self.config.pac, 2)
        batch = max(step, self.config.batch_size // step * step)
        if batch != self.config.batch_size:
            log.info("ctgan needs a batch that is even and a multiple of pac; using %d", batch)
        return batch

    def _fit(self, prepared: pd.DataFrame, callbacks: CallbackList) -> None:
        from ctgan import CTGAN

        self.model_ = CTGAN(
            embedding_dim=self.config.embedding_dim,
            generator_dim=tuple(self.config.generator_dim),
            discriminator_dim=tuple(self.config.discriminator_dim),
            generator_lr=self.config.lr,
            discriminator_lr=self.config.lr,
            batch_size=self._batch_size(),
            epochs=self.config.epochs,
            pac=self.config.pac,
            enable_gpu=resolve_device(self.config.device) == "cuda",
        )
        self.model_.set_random_state(self.config.seed)
        self.model_.fit(prepared, discrete_columns=self.preparer_.discrete_columns)
        losses = self.model_.loss_values
        for epoch, row in enumerate(losses.itertuples(index=False)):
            callbacks.on_epoch_end(epoch, {"loss_g": float(row[1]), "loss_d": float(row[2])})

    def _sample(self, n: int, rng: np.random.Generator, conditions: dict[str, Any] | None) -> pd.DataFrame:
        self.model_.set_random_state(int(rng.integers(2**31 - 1)))
        return self.model_.sample(n)

    def _save(self, directory: Path) -> None:
        self.model_.save(directory / "ctgan.pt")
        with open(directory / "preparer.pkl", "wb") as fh:
            pickle.dump(self.preparer_, fh)

    def _load(self, directory: Path) -> None:
        from ctgan import CTGAN

        self.model_ = CTGAN.load(directory / "ctgan.pt")
        with open(directory / "preparer.pkl", "rb") as fh:
            self.preparer_ = pickle.load(fh)
