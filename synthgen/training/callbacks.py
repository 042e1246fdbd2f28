"""Callbacks: how training reports losses, privacy spent and timings without
importing the tracking or orchestration layers.

A callback implements any of the four hooks; :class:`CallbackList` fans out. A run
resumed from a checkpoint calls ``on_train_resume(epoch, history)`` before its first new
epoch, with the rows of the epochs the checkpoint holds, so a callback that keeps or sends
every epoch's figures can take the restored ones too. :class:`History` keeps the
per-epoch figures (the restored ones included); ``image_cgan`` adds :class:`AdaIntervalLog`
(ADA's ``p`` per adjustment) and :class:`SampleGrid` (sample grids during training).

Progress (:class:`ProgressLog` for epochs, :class:`Phases` for the named steps of
generation and evaluation) is a bar on a terminal and plain log lines otherwise, so
CI logs, DVC stages and Prefect runs get readable lines through ``logging`` (the
``synthgen`` loggers; Prefect picks them up with ``PREFECT_LOGGING_EXTRA_LOGGERS``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("synthgen.training")
progress_log = logging.getLogger("synthgen.progress")

#: Environment variable that overrides the progress style: ``bar``, ``log`` or ``auto``.
PROGRESS_ENV = "SYNTHGEN_PROGRESS"


def use_bar(tty: bool | None = None, stream: IO[str] | None = None) -> bool:
    """Whether progress is drawn as a bar rather than written as log lines.

    Args:
        tty: force a bar (``True``) or log lines (``False``); default ``None``: the
            ``SYNTHGEN_PROGRESS`` environment variable (``bar`` / ``log``) when set,
            else whether ``stream`` is a terminal.
        stream: where a bar would be drawn; default ``sys.stderr``.

    Returns:
        ``True`` for a bar; always ``False`` when tqdm is not installed.
    """
    if tty is None:
        choice = os.environ.get(PROGRESS_ENV, "auto").strip().lower()
        if choice in ("bar", "log"):
            tty = choice == "bar"
        else:
            stream = stream if stream is not None else sys.stderr
            tty = bool(getattr(stream, "isatty", lambda: False)())
    if not tty:
        return False
    try:
        import tqdm  # noqa: F401
    except ImportError:  # pragma: no cover - tqdm comes with the dependencies
        return False
    return True


def _bar(total: int | None, desc: str, unit: str, stream: IO[str] | None):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=stream if stream is not None else sys.stderr,
                dynamic_ncols=True, leave=True)


class Callback:
    """Base class: every hook is a no-op."""

    def on_train_start(self, model: Any) -> None:
        """Called once before the first epoch."""

    def on_train_resume(self, epoch: int, history: list[dict[str, float]]) -> None:
        """Called once, before the first new epoch, when training resumed from a checkpoint
        after ``epoch`` epochs; ``history`` holds those epochs' rows (``{"epoch", **logs}``)."""

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

    def on_train_resume(self, epoch: int, history: list[dict[str, float]]) -> None:
        for cb in self.callbacks:
            hook = getattr(cb, "on_train_resume", None)  # callbacks written before the hook existed
            if hook is not None:
                hook(epoch, history)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def on_train_end(self, model: Any, logs: dict[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_train_end(model, logs)


class History(Callback):
    """Keeps every epoch's logs; ``rows`` feeds the loss-curve plot and ``losses.csv``.

    After a resume ``rows`` starts with the checkpoint's epochs, so it holds every epoch of
    the run once."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_resume(self, epoch: int, history: list[dict[str, float]]) -> None:
        self.rows = [dict(row) for row in history]

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.rows.append({"epoch": epoch, **logs})


def _figures(logs: dict[str, float]) -> dict[str, str]:
    return {k: f"{v:.4g}" for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class ProgressLog(Callback):
    """Training progress: a bar of epochs on a terminal, else a log line every ``every`` epochs.

    In log mode a line (epoch, figures, elapsed time) is written every ``every`` epochs
    and after the last; in bar mode the bar shows the latest figures and one closing
    line is logged at the end, so a log file or Prefect's UI still records the run.

    Args:
        total_epochs: epochs of the run; default ``None``: the model's resolved
            ``config.epochs`` when training starts.
        every: epochs between log lines; default a tenth of the run.
        tty: force a bar (``True``) or log lines (``False``); default ``None``: see
            :func:`use_bar` (``SYNTHGEN_PROGRESS``, else whether stderr is a terminal).
        stream: where the bar is drawn; default ``sys.stderr``.
    """

    def __init__(self, total_epochs: int | None = None, every: int | None = None,
                 tty: bool | None = None, stream: IO[str] | None = None):
        self.total = total_epochs
        self._every = every
        self.tty = tty
        self.stream = stream
        self.bar = None

    def on_train_start(self, model: Any) -> None:
        if self.total is None:
            self.total = int(getattr(getattr(model, "config", None), "epochs", 0) or 0) or None
        self.every = self._every or max(1, (self.total or 10) // 10)
        self._start = time.perf_counter()
        self._last = ""
        self._done = 0
        if use_bar(self.tty, self.stream):
            self.bar = _bar(self.total, "train", "epoch", self.stream)

    def on_train_resume(self, epoch: int, history: list[dict[str, float]]) -> None:
        log.info("resumed from a checkpoint after epoch %d/%s", epoch, self.total or "?")
        if self.bar is not None:
            self.bar.update(epoch - self.bar.n)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        done = epoch + 1
        figures = _figures(logs)
        self._done, self._last = done, " ".join(f"{k}={v}" for k, v in figures.items())
        if self.bar is not None:
            self.bar.set_postfix(figures, refresh=False)
            self.bar.update(done - self.bar.n)
        elif done % self.every == 0 or done == self.total:
            elapsed = time.perf_counter() - getattr(self, "_start", time.perf_counter())
            log.info("epoch %d/%s %s (%.1fs)", done, self.total or "?", self._last, elapsed)

    def on_train_end(self, model: Any, logs: dict[str, float]) -> None:
        if self.bar is None:
            return
        self.bar.close()
        self.bar = None
        elapsed = time.perf_counter() - getattr(self, "_start", time.perf_counter())
        log.info("epoch %d/%s %s (%.1fs)", self._done, self.total or "?", self._last, elapsed)


class Phases:
    """Progress over the named phases of one step (generation, evaluation), with timings.

    Log mode writes one line per finished phase, ``"validate: fidelity 1.2s (1/5)"``;
    bar mode advances a bar of phases (the running one as its postfix) and logs one
    closing line with every phase's time. ``timings`` keeps the seconds per phase. The
    step finishes after the last of ``names`` (or on leaving a ``with`` block), so it
    can be used with or without ``with``.

    Example::

        phases = Phases("validate", ["fidelity", "privacy"])
        with phases("fidelity"):
            ...

    Args:
        step: the step's name, the prefix of every line (e.g. ``"validate"``).
        names: the phases in their expected order; default ``()`` (total unknown:
            finish with ``with`` or :meth:`finish`).
        tty: force a bar (``True``) or log lines (``False``); default ``None``: see
            :func:`use_bar`.
        stream: where the bar is drawn; default ``sys.stderr``.
        logger: where lines go; default the ``synthgen.progress`` logger.
    """

    def __init__(self, step: str, names: Sequence[str] = (), tty: bool | None = None,
                 stream: IO[str] | None = None, logger: logging.Logger | None = None):
        self.step = step
        self.names = list(names)
        self.tty = tty
        self.stream = stream
        self.logger = logger or progress_log
        self.timings: dict[str, float] = {}
        self.bar = None
        self._start: float | None = None
        self._finished = False

    def _open(self) -> None:
        if self._start is None:
            self._start = time.perf_counter()
            if use_bar(self.tty, self.stream):
                self.bar = _bar(len(self.names) or None, self.step, "phase", self.stream)

    def __enter__(self) -> Phases:
        self._open()
        return self

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        """Time the phase ``name``; its line or bar step comes when it finishes."""
        self._open()
        if self.bar is not None:
            self.bar.set_postfix_str(name)
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.timings[name] = self.timings.get(name, 0.0) + seconds
        if self.bar is not None:
            self.bar.update(1)
        else:
            total = len(self.names) or "?"
            self.logger.info("%s: %s %.1fs (%d/%s)", self.step, name, seconds, len(self.timings), total)
        if self.names and all(n in self.timings for n in self.names):
            self.finish()

    def finish(self) -> None:
        """Close the bar and log the closing line (bar mode); idempotent."""
        if self._finished or self._start is None:
            return
        self._finished = True
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            spent = ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items())
            self.logger.info("%s: %.1fs (%s)", self.step, time.perf_counter() - self._start, spent)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        elif self.bar is not None:
            self.bar.close()
            self.bar = None


# -- image_cgan ------------------------------------------------------------------------------------
class AdaIntervalLog(Callback):
    """ADA's ``p`` and ``r_t`` at every adjustment (each ``model.ada_interval`` steps), not
    only their epoch means: passed to ``log_metrics({"ada_p_interval", "ada_rt_interval"},
    step=<global step>)`` once per epoch (one device sync), and kept in :attr:`rows` for
    ``ada.csv``.

    Args:
        log_metrics: ``log_metrics(metrics, step)`` (e.g. the tracker's); default ``None``.
    """

    def __init__(self, log_metrics: Callable[..., None] | None = None):
        self.log_metrics = log_metrics
        self.rows: list[dict[str, float]] = []

    def on_train_start(self, model: Any) -> None:
        self.model = model

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        trace = self.model.ada_trace_
        for step, p, rt in trace:
            row = {"step": step, "ada_p": float(p), "ada_rt": float(rt)}
            self.rows.append(row)
            if self.log_metrics is not None:
                self.log_metrics({"ada_p_interval": row["ada_p"], "ada_rt_interval": row["ada_rt"]}, step=step)
        trace.clear()


class SampleGrid(Callback):
    """Every ``every`` epochs (and the last) a grid of EMA samples - one row per class,
    fixed noise - is written to ``directory/epoch-<n>.png`` and passed to ``log_artifact``
    (e.g. the tracker's, which sends it to MLflow).

    Args:
        directory: where the PNGs go.
        total_epochs: the run's epochs (the last one always gets a grid); replaced at the
            start of training by the model's resolved ``config.epochs`` (an unset
            ``model.epochs`` is settled from the data only then).
        every: epochs between grids; 0 = the last epoch only. Default 0.
        log_artifact: ``log_artifact(path, artifact_path)``; default ``None``.
        per_class: images per class row. Default 10.
    """

    def __init__(self, directory: str | Path, total_epochs: int, every: int = 0,
                 log_artifact: Callable[[Path, str], None] | None = None, per_class: int = 10):
        self.directory, self.total, self.every = Path(directory), total_epochs, every
        self.log_artifact, self.per_class = log_artifact, per_class
        self.written: list[Path] = []

    def on_train_start(self, model: Any) -> None:
        import torch

        self.model = model
        self.total = int(getattr(getattr(model, "config", None), "epochs", 0) or self.total)
        k = len(model.classes_)
        gen = torch.Generator().manual_seed(0)
        self.z = torch.randn(k * self.per_class, model.config.embedding_dim, generator=gen)
        self.y = torch.arange(k).repeat_interleave(self.per_class)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        done = epoch + 1
        if not (done == self.total or (self.every and done % self.every == 0)):
            return
        from synthgen.data.images import sample_grid

        if done < self.total:  # the last epoch's statistics are refreshed by fit itself
            ema = self.model.ema_
            saved = {k: v.clone() for k, v in ema.state_dict().items()}
            self.model.refresh_ema_stats()
            images = self.model.generate(self.z, self.y)
            ema.load_state_dict(saved)
        else:
            self.model.refresh_ema_stats()
            images = self.model.generate(self.z, self.y)
        path = self.directory / f"epoch-{done:05d}.png"
        sample_grid(images, self.y.numpy(), path, nrow=self.per_class)
        self.written.append(path)
        if self.log_artifact is not None:
            self.log_artifact(path, "samples")
