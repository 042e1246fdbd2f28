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

Checkpoints (``checkpoint_every`` epochs, and the last epoch) hold the networks, the
optimizers, every random generator's state, the privacy accountant, the history and the
state of any ``extra_modules`` (e.g. an EMA generator, an augmentation ``p`` buffer);
they are written to a temporary file and renamed, so a kill never leaves a torn one.
:meth:`GANLoop.run` resumes from the latest checkpoint in ``checkpoint_dir`` whose
``fingerprint`` matches (same data and settings) and, on CPU, continues exactly as the
uninterrupted run would have.

A checkpoint holds only tensors (weights, optimizer moments, ``torch.Generator`` states)
and plain values (numbers, strings, lists, dicts: a numpy generator's state, the
history; numpy values are converted to Python ones on save), and is read with
``torch.load(weights_only=True)``: a checkpoint holding any other object - a planted
pickle payload - is skipped with a warning naming the file, never executed, and training
resumes from the previous good checkpoint or from scratch.
"""

from __future__ import annotations

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

log = logging.getLogger(__name__)

_CKPT = re.compile(r"checkpoint-(\d{6})\.pt$")
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
        checkpoint_every: epochs between checkpoints; 0 disables them.
        rngs: named ``torch.Generator`` / ``numpy.random.Generator`` objects whose
            states are checkpointed.
        privacy: a :class:`~synthgen.training.dp.CriticPrivacy`, or ``None``.
        fingerprint: identifies data and settings; checkpoints of another fingerprint
            are ignored.
        keep: checkpoints kept on disk. Default 2.
        extra_modules: further modules whose ``state_dict`` is checkpointed and restored
            on resume (buffers included). Default none.
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
        rngs: dict[str, Any] | None = None,
        privacy: Any = None,
        fingerprint: str = "",
        keep: int = 2,
        extra_modules: dict[str, nn.Module] | None = None,
    ):
        self.loss = loss
        self.generator, self.critic = generator, critic
        self.opt_g, self.opt_d = opt_g, opt_d
        self.epochs, self.steps_per_epoch, self.critic_steps = epochs, steps_per_epoch, critic_steps
        self.callbacks = callbacks or CallbackList()
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.checkpoint_every = checkpoint_every
        self.rngs = rngs or {}
        self.privacy = privacy
        self.fingerprint = fingerprint
        self.keep = keep
        self.extra_modules = extra_modules or {}
        self._after_step = getattr(loss, "after_step", None)

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> LoopResult:
        result = LoopResult()
        start = self._resume(result)
        result.resumed_from = start
        result.epochs_run = start
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
            logs = {k: float(v) / self.steps_per_epoch for k, v in sums.items()}
            logs["epoch_seconds"] = time.perf_counter() - tick
            if self.privacy is not None:
                logs["epsilon"] = self.privacy.epsilon_spent
            result.history.append({"epoch": epoch, **logs})
            result.epochs_run = epoch + 1
            if self._due(epoch):
                self.save_checkpoint(result)
            self.callbacks.on_epoch_end(epoch, logs)
        if result.stopped_early and self.checkpoint_dir and self.checkpoint_every:
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
            self.opt_d.step()
        return logs

    def _generator_update(self, step: int) -> dict[str, torch.Tensor]:
        self.critic.requires_grad_(False)  # no critic gradients (nor per-sample hooks)
        if self.privacy is not None:
            self.privacy.set_hooks(False)
        self.opt_g.zero_grad(set_to_none=True)
        loss, logs = self.loss.generator_loss(step)
        loss.backward()
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
    def _due(self, epoch: int) -> bool:
        if not (self.checkpoint_dir and self.checkpoint_every):
            return False
        return (epoch + 1) % self.checkpoint_every == 0 or epoch + 1 == self.epochs

    def state_dict(self, result: LoopResult) -> dict[str, Any]:
        rng_states: dict[str, Any] = {}
        for name, gen in self.rngs.items():
            if isinstance(gen, torch.Generator):
                rng_states[name] = ("torch", gen.get_state())
            else:
                rng_states[name] = ("numpy", gen.bit_generator.state)
        return {
            "fingerprint": self.fingerprint,
            "epoch": result.epochs_run,
            "stopped_early": result.stopped_early,
            "history": _plain(result.history),
            "generator": self.generator.state_dict(),
            "critic": self.critic.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rngs": _plain(rng_states),
            "privacy": _plain(self.privacy.state_dict()) if self.privacy is not None else None,
            "extra": {name: m.state_dict() for name, m in self.extra_modules.items()},
        }

    def save_checkpoint(self, result: LoopResult) -> Path:
        """Write ``checkpoint-<epoch>.pt`` atomically; prune old ones."""
        assert self.checkpoint_dir is not None
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / f"checkpoint-{result.epochs_run:06d}.pt"
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        torch.save(self.state_dict(result), tmp)
        os.replace(tmp, path)
        for old in self._checkpoints()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def _checkpoints(self) -> list[Path]:
        if not self.checkpoint_dir or not self.checkpoint_dir.is_dir():
            return []
        found = [p for p in self.checkpoint_dir.iterdir() if _CKPT.match(p.name)]
        return sorted(found, key=lambda p: int(_CKPT.match(p.name).group(1)))  # type: ignore[union-attr]

    def _resume(self, result: LoopResult) -> int:
        for path in reversed(self._checkpoints()):
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
                log.warning("checkpoint %s is from other data or settings; starting afresh", path)
                return 0
            self.generator.load_state_dict(state["generator"])
            self.critic.load_state_dict(state["critic"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            for name, (kind, st) in state["rngs"].items():  # torch: a uint8 tensor; numpy: a dict
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
        return 0


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
