"""One GAN training loop for every family, with callbacks, checkpoints and resume.

The loop knows nothing about tables or images. A family hands it its networks, their
optimizers, the random generators that drive training, and a *loss object* with one
method per phase (as in StyleGAN2-ADA's ``training/loss.py``)::

    class MyLoss:
        def critic_loss(self, step: int) -> tuple[Tensor, dict[str, Tensor]]: ...
        def generator_loss(self, step: int) -> tuple[Tensor, dict[str, Tensor]]: ...

``critic_loss`` returns a scalar, or - under differential privacy - a per-sample
vector that the privacy object back-propagates (per-sample clipping needs it). A loss
object may also define ``after_step(step)``, called after each generator update, for
per-step work outside the two optimizers (the image family's ADA ``p`` update and
generator EMA). Logged
values are detached tensors; they are averaged per epoch and read back once per epoch
(one device sync), then passed to the callbacks with ``epoch_seconds`` and, under DP,
``epsilon``.

Checkpoints (every ``checkpoint_every`` epochs and/or ``checkpoint_seconds`` of training,
and after the last epoch) hold the networks, the optimizers, every random generator's
state, the privacy accountant, the history and the state of any ``extra_modules`` (e.g. an
EMA generator, an augmentation ``p`` buffer); they are written to a temporary file,
fsync'd and renamed, so a kill never leaves a torn one. A checkpoint is named after its
settings and epoch, ``checkpoint-<fingerprint tag>-<epoch>.pt`` (the tag: 12 hex digits of
the fingerprint's SHA-256). :meth:`GANLoop.run` resumes from the newest checkpoint in
``checkpoint_dir`` whose ``fingerprint`` matches (same data and settings) and that is not
past ``epochs``, and, on CPU, continues exactly as the uninterrupted run would have; a
finished run's last checkpoint lets a longer run (``epochs`` raised) continue from it.
Pruning keeps the ``keep`` newest checkpoints up to the one just written *of this
fingerprint* only: checkpoints of other data or settings (and those of a longer run of the
same settings) are never used for this run and never deleted by it. The callbacks learn
of a resume through ``on_train_resume(epoch, history)`` with the restored epochs' rows, so
a loss history (``History``) or a tracker is complete after a resume.

A checkpoint holds only tensors (weights, optimizer moments, ``torch.Generator`` states)
and plain values (numbers, strings, lists, dicts: a numpy generator's state, the
history; numpy values are converted to Python ones on save), and is read with
``torch.load(weights_only=True)``: a checkpoint holding any other object - a planted
pickle payload - is skipped with a warning naming the file, never executed, and training
resumes from the previous good checkpoint or from scratch.

Under ``torchrun`` (a :class:`~synthgen.training.distributed.Group` of several processes,
see :mod:`synthgen.training.distributed`) every rank runs this loop: both networks start
from rank 0's state, each gradient is averaged over the ranks between ``backward()`` and
``step()``, the epoch logs are the ranks' mean, and only rank 0 writes checkpoints (with
every rank's random-generator states) and reads the one to resume from.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from synthgen.training.callbacks import CallbackList
from synthgen.training.distributed import Group, current

log = logging.getLogger(__name__)

#: ``checkpoint-<tag>-<epoch>.pt``; the tag-less ``checkpoint-<epoch>.pt`` of older synthgen
#: versions is still read (its fingerprint checked), never pruned.
_CKPT = re.compile(r"checkpoint-(?:([0-9a-f]{12})-)?(\d{6,})\.pt$")
_CHECKPOINT_KEYS = frozenset({"fingerprint", "epoch", "history", "generator", "critic", "opt_g", "opt_d", "rngs"})


class GANLoss(Protocol):
    """Per-family losses; each call draws its own batch."""

    def critic_loss(self, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def generator_loss(self, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


@dataclass
class LoopResult:
    """What a run did: epochs completed (including resumed ones), whether the privacy
    budget stopped it, and every epoch's logs."""

    epochs_run: int = 0
    stopped_early: bool = False
    resumed_from: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


class GANLoop:
    """Alternate critic and generator updates for ``epochs * steps_per_epoch`` steps.

    Args:
        loss: the family's loss object (see :class:`GANLoss`).
        generator: the generator network.
        critic: the critic network (the unwrapped module; its state is checkpointed).
        opt_g: generator optimizer.
        opt_d: critic optimizer (a DP optimizer under privacy).
        epochs: epochs to run in total.
        steps_per_epoch: generator updates per epoch.
        critic_steps: critic updates per generator update. Default 1.
        callbacks: receive ``on_epoch_end(epoch, logs)``.
        checkpoint_dir: where checkpoints go; ``None`` disables them.
        checkpoint_every: epochs between checkpoints; default 0 (not by epochs).
        checkpoint_seconds: seconds of training between checkpoints; default 0 (not by
            time). With both 0 there are no checkpoints (nor resume); otherwise the last
            epoch is checkpointed too.
        rngs: named ``torch.Generator`` / ``numpy.random.Generator`` objects whose
            states are checkpointed.
        privacy: a :class:`~synthgen.training.dp.CriticPrivacy`, or ``None``.
        fingerprint: identifies data and settings (not ``epochs``, unless the number of
            epochs changes what each step does); checkpoints of another fingerprint are
            ignored and left alone.
        keep: checkpoints of this fingerprint kept on disk. Default 2.
        extra_modules: further modules whose ``state_dict`` is checkpointed and restored
            on resume (buffers included). Default none.
        group: the processes training together; default ``None``: the running process
            group, if any (:func:`~synthgen.training.distributed.current`).
    """

    def __init__(
        self,
        loss: GANLoss,
        generator: nn.Module,
        critic: nn.Module,
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer,
        epochs: int,
        steps_per_epoch: int,
        critic_steps: int = 1,
        callbacks: CallbackList | None = None,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = 0,
        checkpoint_seconds: float = 0.0,
        rngs: dict[str, Any] | None = None,
        privacy: Any = None,
        fingerprint: str = "",
        keep: int = 2,
        extra_modules: dict[str, nn.Module] | None = None,
        group: Group | None = None,
    ):
        self.loss = loss
        self.generator, self.critic = generator, critic
        self.opt_g, self.opt_d = opt_g, opt_d
        self.epochs, self.steps_per_epoch, self.critic_steps = epochs, steps_per_epoch, critic_steps
        self.callbacks = callbacks or CallbackList()
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self.rngs = rngs or {}
        self.privacy = privacy
        self.fingerprint = fingerprint
        self.keep = keep
        self.extra_modules = extra_modules or {}
        self.group = group if group is not None else current()
        self._after_step = getattr(loss, "after_step", None)
        self.tag = hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
        self._last_save = time.perf_counter()

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> LoopResult:
        result = LoopResult()
        self.group.broadcast_modules([self.generator, self.critic, *self.extra_modules.values()])
        start = self._resume(result) if self.checkpointing else 0
        result.resumed_from = start
        result.epochs_run = start
        if start:
            self.callbacks.on_train_resume(start, [dict(row) for row in result.history])
        self._last_save = time.perf_counter()
        for epoch in range(start, self.epochs):
            if self.privacy is not None and not self.privacy.allows(self.steps_per_epoch * self.critic_steps):
                log.info("privacy budget reached: stopping before epoch %d", epoch + 1)
                result.stopped_early = True
                break
            tick = time.perf_counter()
            sums: dict[str, torch.Tensor] = {}
            for i in range(self.steps_per_epoch):
                step = epoch * self.steps_per_epoch + i
                self._add(sums, self._critic_update(step))
                self._add(sums, self._generator_update(step))
                if self._after_step is not None:
                    self._after_step(step)
            logs = {k: float(v) / self.steps_per_epoch for k, v in self.group.mean_logs(sums).items()}
            logs["epoch_seconds"] = time.perf_counter() - tick
            if self.privacy is not None:
                logs["epsilon"] = self.privacy.epsilon_spent
            result.history.append({"epoch": epoch, **logs})
            result.epochs_run = epoch + 1
            if self._due(epoch):
                self.save_checkpoint(result)
            self.callbacks.on_epoch_end(epoch, logs)
        if result.stopped_early and self.checkpointing:
            self.save_checkpoint(result)
        return result

    def _critic_update(self, step: int) -> dict[str, torch.Tensor]:
        logs: dict[str, torch.Tensor] = {}
        self.critic.requires_grad_(True)
        for _ in range(self.critic_steps):
            self.opt_d.zero_grad(set_to_none=True)
            loss, logs = self.loss.critic_loss(step)
            if loss.ndim and self.privacy is not None:
                self.privacy.backward(loss)
            else:
                loss.mean().backward()
            self.group.average_gradients(self.critic)
            self.opt_d.step()
        return logs

    def _generator_update(self, step: int) -> dict[str, torch.Tensor]:
        self.critic.requires_grad_(False)  # no critic gradients (nor per-sample hooks)
        if self.privacy is not None:
            self.privacy.set_hooks(False)
        self.opt_g.zero_grad(set_to_none=True)
        loss, logs = self.loss.generator_loss(step)
        loss.backward()
        self.group.average_gradients(self.generator)
        self.opt_g.step()
        self.critic.requires_grad_(True)
        if self.privacy is not None:
            self.privacy.set_hooks(True)
        return logs

    @staticmethod
    def _add(sums: dict[str, torch.Tensor], logs: dict[str, torch.Tensor]) -> None:
        for k, v in logs.items():
            v = v.detach()
            sums[k] = sums[k] + v if k in sums else v

    # -- checkpoints ------------------------------------------------------------------------
    @property
    def checkpointing(self) -> bool:
        """Whether this loop writes checkpoints and resumes from them."""
        return self.checkpoint_dir is not None and bool(self.checkpoint_every or self.checkpoint_seconds)

    def _due(self, epoch: int) -> bool:
        if not self.checkpointing:
            return False
        if epoch + 1 == self.epochs or (self.checkpoint_every and (epoch + 1) % self.checkpoint_every == 0):
            return True
        if not self.checkpoint_seconds:
            return False  # the ranks' clocks differ: rank 0 decides
        return self.group.agree(time.perf_counter() - self._last_save >= self.checkpoint_seconds)

    def rng_states(self) -> dict[str, Any]:
        """This rank's random generators' states (``(kind, state)`` by name), checkpoint-ready."""
        states: dict[str, Any] = {}
        for name, gen in self.rngs.items():
            if isinstance(gen, torch.Generator):
                states[name] = ("torch", gen.get_state())
            else:
                states[name] = ("numpy", gen.bit_generator.state)
        return _plain(states)

    def state_dict(self, result: LoopResult) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "epoch": result.epochs_run,
            "stopped_early": result.stopped_early,
            "history": _plain(result.history),
            "generator": self.generator.state_dict(),
            "critic": self.critic.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rngs": self.rng_states(),
            "privacy": _plain(self.privacy.state_dict()) if self.privacy is not None else None,
            "extra": {name: m.state_dict() for name, m in self.extra_modules.items()},
        }

    def save_checkpoint(self, result: LoopResult) -> Path | None:
        """Write ``checkpoint-<tag>-<epoch>.pt`` atomically (fsync'd, then renamed); prune
        this fingerprint's older ones, keeping ``keep`` up to this one. Every rank calls it;
        rank 0 writes, with every rank's generator states (``rank_rngs``) when there are several.

        Returns:
            The checkpoint's path (``None`` on the ranks that do not write).
        """
        assert self.checkpoint_dir is not None
        ranks = self.group.gather(self.rng_states()) if self.group.active else None
        if not self.group.is_main:
            return None
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        epoch = result.epochs_run
        path = self.checkpoint_dir / f"checkpoint-{self.tag}-{epoch:06d}.pt"
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        state = self.state_dict(result)
        if ranks is not None:
            state["rank_rngs"] = ranks
        with open(tmp, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.checkpoint_dir)
        self._last_save = time.perf_counter()
        older = [p for e, tag, p in self._checkpoints() if tag == self.tag and e < epoch]
        for old in older[: max(0, len(older) - (self.keep - 1))]:
            old.unlink(missing_ok=True)
        return path

    def _checkpoints(self) -> list[tuple[int, str | None, Path]]:
        """Every checkpoint file in ``checkpoint_dir`` as ``(epoch, tag, path)``, oldest
        first (``tag`` is ``None`` for an older synthgen's tag-less name)."""
        if not self.checkpoint_dir or not self.checkpoint_dir.is_dir():
            return []
        found = []
        for p in self.checkpoint_dir.iterdir():
            match = _CKPT.match(p.name)
            if match:
                found.append((int(match.group(2)), match.group(1), p))
        return sorted(found, key=lambda item: (item[0], item[1] is not None))

    def _candidates(self) -> list[Path]:
        """The checkpoints this run may resume from, newest first: this fingerprint's (and
        tag-less ones, checked when loaded) up to ``epochs``."""
        found = self._checkpoints()
        others = sum(tag not in (None, self.tag) for _, tag, _ in found)
        later = sum(tag == self.tag and e > self.epochs for e, tag, _ in found)
        if others or later:
            log.info("%s: %d checkpoint(s) of other data or settings%s; not used, not deleted", self.checkpoint_dir,
                     others, f" and {later} past epoch {self.epochs}" if later else "")
        return [p for e, tag, p in reversed(found) if tag in (None, self.tag) and e <= self.epochs]

    def _newest_state(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint this run can resume from, read safely, with its path; ``None``
        when there is none (on rank 0 only under torchrun: it is sent to the other ranks)."""
        for path in self._candidates():
            try:  # weights_only: tensors and plain values; any other object is refused, not built
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # a planted pickle, a torn or a foreign file: try the previous one
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.warning("checkpoint %s cannot be loaded safely (%s); skipped", path, reason)
                continue
            missing = _CHECKPOINT_KEYS - set(state) if isinstance(state, dict) else _CHECKPOINT_KEYS
            if missing:
                log.warning("checkpoint %s is not a synthgen checkpoint (no %s); skipped", path, sorted(missing))
                continue
            if state.get("fingerprint") != self.fingerprint:
                log.info("checkpoint %s is from other data or settings; not used", path)
                continue
            if self.group.active and len(state.get("rank_rngs") or ()) != self.group.world_size:
                log.info("checkpoint %s holds no generator states for %d ranks; not used", path,
                         self.group.world_size)
                continue
            return path, state
        return None

    def _resume(self, result: LoopResult) -> int:
        found = self.group.from_main(self._newest_state)
        if found is None:
            return 0
        path, state = found
        self.generator.load_state_dict(state["generator"])
        self.critic.load_state_dict(state["critic"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        rngs = state["rank_rngs"][self.group.rank] if self.group.active else state["rngs"]
        for name, (kind, st) in rngs.items():  # torch: a uint8 tensor; numpy: a dict
            gen = self.rngs[name]
            if kind == "torch":
                gen.set_state(st)
            else:
                gen.bit_generator.state = st
        if self.privacy is not None and state["privacy"] is not None:
            self.privacy.load_state_dict(state["privacy"])
        for name, module in self.extra_modules.items():
            module.load_state_dict(state.get("extra", {})[name])
        result.history = list(state["history"])
        result.stopped_early = bool(state.get("stopped_early", False))
        log.info("resumed from %s (epoch %d)", path, state["epoch"])
        return self.epochs if result.stopped_early else int(state["epoch"])


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems without directory fsync
        pass
    finally:
        os.close(fd)


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and numpy arrays as lists (containers
    kept, tensors untouched): what ``torch.load(weights_only=True)`` reads back."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
