"""Callbacks: how training reports losses, privacy spent and timings without
importing the tracking or orchestration layers.

A callback implements any of the three hooks; :class:`CallbackList` fans out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("synthgen.training")


class Callback:
    """Base class: every hook is a no-op."""

    def on_train_start(self, model: Any) -> None:
        """Called once before the first epoch."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        """Called after each epoch (0-based) with that epoch's figures."""

    def on_train_end(self, model: Any, logs: dict[str, float]) -> None:
        """Called once after training."""


class CallbackList(Callback):
    def __init__(self, callbacks: Iterable[Callback] = ()):
        self.callbacks = list(callbacks)

    def on_train_start(self, model: Any) -> None:
        for cb in self.callbacks:
            cb.on_train_start(model)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def on_train_end(self, model: Any, logs: dict[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_train_end(model, logs)


class History(Callback):
    """Keeps every epoch's logs; ``rows`` feeds the loss-curve plot."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.rows.append({"epoch": epoch, **logs})


class ProgressLog(Callback):
    """One log line every ``every`` epochs (and the last), with elapsed time.

    Args:
        total_epochs: epochs of the run; default ``None``: the model's resolved
            ``config.epochs`` when training starts.
        every: epochs between lines; default a tenth of the run.
    """

    def __init__(self, total_epochs: int | None = None, every: int | None = None):
        self.total = total_epochs
        self._every = every

    def on_train_start(self, model: Any) -> None:
        if self.total is None:
            self.total = int(getattr(getattr(model, "config", None), "epochs", 0) or 0) or None
        self.every = self._every or max(1, (self.total or 10) // 10)
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        done = epoch + 1
        if done % self.every == 0 or done == self.total:
            figures = " ".join(f"{k}={v:.4g}" for k, v in logs.items() if isinstance(v, (int, float)))
            elapsed = time.perf_counter() - getattr(self, "_start", time.perf_counter())
            log.info("epoch %d/%s %s (%.1fs)", done, self.total or "?", figures, elapsed)
