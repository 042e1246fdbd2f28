"""The shared GAN loop (``synthgen.training.loop.GANLoop``) on a toy problem.

A 1-D generator learns to imitate N(3, 0.5) against a 1-D critic, with a toy loss object;
a few steps each, so the file runs in seconds. Checked: per-epoch logs and callbacks,
``critic_steps`` and ``after_step``, checkpoints (pruning, exact resume, another
fingerprint), and a privacy object's budget stop.
"""

from __future__ import annotations

import copy
import hashlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from synthgen.training.callbacks import Callback, CallbackList, History
from synthgen.training.loop import GANLoop
from tests.tiny import KillAfter

EPOCHS, STEPS, BATCH = 4, 3, 16


class ToyLoss:
    """Logistic GAN loss on 1-D data; counts its calls; ``per_sample`` returns the critic's
    loss per sample (the form a privacy object back-propagates)."""

    def __init__(self, gen_net: nn.Module, critic: nn.Module, rng: torch.Generator, ema: Ema,
                 per_sample: bool = False):
        self.G, self.D, self.rng, self.ema, self.per_sample = gen_net, critic, rng, ema, per_sample
        self.calls = {"critic": 0, "generator": 0, "after": 0}

    def _fake(self) -> torch.Tensor:
        return self.G(torch.randn(BATCH, 1, generator=self.rng))

    def critic_loss(self, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.calls["critic"] += 1
        real = 3 + 0.5 * torch.randn(BATCH, 1, generator=self.rng)
        with torch.no_grad():
            fake = self._fake()
        per = torch.cat([F.softplus(-self.D(real)), F.softplus(self.D(fake))]).squeeze(1)
        return (per if self.per_sample else per.mean()), {"loss_d": per.detach().mean()}

    def generator_loss(self, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.calls["generator"] += 1
        loss = F.softplus(-self.D(self._fake())).mean()
        return loss, {"loss_g": loss.detach()}

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        self.calls["after"] += 1
        for p_ema, p in zip(self.ema.net.parameters(), self.G.parameters()):
            p_ema.lerp_(p, 0.5)
        self.ema.steps += 1


class Ema(nn.Module):
    """A copy of the generator with a step-count buffer (an ``extra_modules`` entry)."""

    def __init__(self, gen_net: nn.Module):
        super().__init__()
        self.net = copy.deepcopy(gen_net).requires_grad_(False)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))


def make_loop(tmp_path=None, epochs: int = EPOCHS, callbacks=(), fingerprint: str = "toy", critic_steps: int = 1,
              privacy=None, checkpoint_every: int = 0):
    torch.manual_seed(123)  # parameter init only; training draws come from `rng`
    gen_net = nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Linear(8, 1))
    critic = nn.Sequential(nn.Linear(1, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
    ema = Ema(gen_net)
    rng = torch.Generator().manual_seed(0)
    loss = ToyLoss(gen_net, critic, rng, ema, per_sample=privacy is not None)
    opt_g = torch.optim.Adam(gen_net.parameters(), lr=1e-2)
    opt_d = torch.optim.Adam(critic.parameters(), lr=1e-2)
    loop = GANLoop(
        loss, gen_net, critic, opt_g, opt_d, epochs=epochs, steps_per_epoch=STEPS, critic_steps=critic_steps,
        callbacks=CallbackList(callbacks), checkpoint_dir=tmp_path, checkpoint_every=checkpoint_every,
        rngs={"torch": rng}, privacy=privacy, fingerprint=fingerprint, extra_modules={"ema": ema},
    )
    return loop, loss, gen_net, ema


def ckpt(epoch: int, fingerprint: str = "toy") -> str:
    """The file name of a checkpoint: its fingerprint's tag and its epoch."""
    return f"checkpoint-{hashlib.sha256(fingerprint.encode()).hexdigest()[:12]}-{epoch:06d}.pt"


def _figures(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in history]




def test_losses_come_back_per_epoch_and_callbacks_see_every_epoch():
    history = History()
    loop, loss, _, ema = make_loop(callbacks=[history])
    result = loop.run()
    assert result.epochs_run == EPOCHS and result.resumed_from == 0 and not result.stopped_early
    assert [row["epoch"] for row in result.history] == list(range(EPOCHS))
    assert [row["epoch"] for row in history.rows] == list(range(EPOCHS))
    for row in result.history:
        assert {"loss_d", "loss_g", "epoch_seconds"} <= set(row)
        assert all(isinstance(v, float) for k, v in row.items() if k != "epoch")
    assert loss.calls == {"critic": EPOCHS * STEPS, "generator": EPOCHS * STEPS, "after": EPOCHS * STEPS}
    assert int(ema.steps) == EPOCHS * STEPS


def test_critic_steps_per_generator_step():
    loop, loss, _, _ = make_loop(epochs=2, critic_steps=3)
    loop.run()
    assert loss.calls["critic"] == 3 * loss.calls["generator"] == 3 * 2 * STEPS


def test_training_moves_the_generator_towards_the_data():
    loop, _, gen_net, _ = make_loop(epochs=40)
    before = gen_net(torch.randn(512, 1, generator=torch.Generator().manual_seed(9))).mean().item()
    loop.run()
    after = gen_net(torch.randn(512, 1, generator=torch.Generator().manual_seed(9))).mean().item()
    assert abs(after - 3) < abs(before - 3)


def test_checkpoints_are_written_pruned_and_resumed_exactly(tmp_path):
    full, _, full_gen, full_ema = make_loop()
    reference = full.run()

    killed, _, _, _ = make_loop(tmp_path, callbacks=[KillAfter(after=3)], checkpoint_every=1)
    with pytest.raises(KeyboardInterrupt):
        killed.run()
    # epochs 1-3 were checkpointed; the two newest are kept
    assert sorted(p.name for p in tmp_path.iterdir()) == [ckpt(2), ckpt(3)]

    history = History()
    resumed, loss, gen_net, ema = make_loop(tmp_path, callbacks=[history], checkpoint_every=1)
    result = resumed.run()
    assert result.resumed_from == 3 and result.epochs_run == EPOCHS
    assert [row["epoch"] for row in history.rows] == [0, 1, 2, 3]  # the restored epochs, then the new one
    assert loss.calls["generator"] == STEPS  # only the missing epoch ran
    assert _figures(result.history) == _figures(reference.history)
    for a, b in zip(gen_net.state_dict().values(), full_gen.state_dict().values()):
        assert torch.equal(a, b)
    assert int(ema.steps) == int(full_ema.steps) == EPOCHS * STEPS
    for a, b in zip(ema.state_dict().values(), full_ema.state_dict().values()):
        assert torch.equal(a, b)
    assert sorted(p.name for p in tmp_path.iterdir()) == [ckpt(3), ckpt(4)]


def test_checkpoints_of_other_settings_are_ignored(tmp_path):
    first, _, _, _ = make_loop(tmp_path, epochs=2, checkpoint_every=2)
    first.run()
    assert (tmp_path / ckpt(2)).is_file()
    other, loss, _, _ = make_loop(tmp_path, epochs=2, checkpoint_every=2, fingerprint="other data")
    result = other.run()
    assert result.resumed_from == 0 and loss.calls["generator"] == 2 * STEPS
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ckpt(2), ckpt(2, "other data")])  # both kept


class ToyPrivacy:
    """Stands in for ``CriticPrivacy``: a budget of ``budget`` critic steps, one "epsilon" per step."""

    def __init__(self, budget: int):
        self.budget, self.steps, self.backwards, self.hooks_off = budget, 0, 0, 0

    def allows(self, steps: int) -> bool:
        return self.steps + steps <= self.budget

    @property
    def epsilon_spent(self) -> float:
        return float(self.steps)

    def backward(self, per_sample: torch.Tensor) -> None:
        assert per_sample.ndim == 1
        self.backwards += 1
        self.steps += 1
        per_sample.mean().backward()

    def set_hooks(self, on: bool) -> None:
        self.hooks_off += not on

    def state_dict(self) -> dict:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]


def test_privacy_budget_stops_before_it_is_exceeded_and_logs_epsilon(tmp_path):
    privacy = ToyPrivacy(budget=2 * STEPS + 1)  # room for two epochs, not three
    loop, loss, _, _ = make_loop(tmp_path, privacy=privacy, checkpoint_every=10)
    result = loop.run()
    assert result.stopped_early and result.epochs_run == 2
    assert [row["epsilon"] for row in result.history] == [STEPS, 2 * STEPS]
    assert privacy.backwards == loss.calls["critic"] == 2 * STEPS
    assert privacy.hooks_off == loss.calls["generator"]
    assert (tmp_path / ckpt(2)).is_file()  # a stopped run is checkpointed
    again, loss2, _, _ = make_loop(tmp_path, privacy=ToyPrivacy(budget=2 * STEPS + 1), checkpoint_every=10)
    result2 = again.run()
    assert result2.stopped_early and result2.resumed_from == EPOCHS and loss2.calls["critic"] == 0
