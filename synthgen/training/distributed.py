"""Data-parallel GAN training under ``torchrun``: the process group, gradient averaging,
per-rank seeds and rank 0 as the only writer.

``torchrun --nproc_per_node=N -m synthgen train --params params.yaml`` starts N processes
with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set. The train stage opens a process group
for its duration (:func:`session`: NCCL when the model trains on CUDA, pinned to
``cuda:LOCAL_RANK``; gloo on CPU) and every rank runs the same training; without those
variables (or with ``WORLD_SIZE=1``) there is no process group and training is what it is
in one process. The shared loop (:class:`~synthgen.training.loop.GANLoop`) and the families
reach the group through :func:`current`, a :class:`Group` whose methods are no-ops for one
process.

**Design: gradients are all-reduced by hand, not by ``DistributedDataParallel``.** A GAN
step alternates two networks. The generator's loss back-propagates *through* the critic
(whose ``requires_grad`` is off for that step), the critic's loss reads generator output
made under ``no_grad``, and the R1 / gradient penalties take a double backward. DDP's
reducer fires its all-reduce from autograd hooks and expects each wrapped module's
forward to be followed by one backward that reaches its parameters: the critic's forward
inside the generator step would need ``no_sync`` (or ``find_unused_parameters``), the
penalty's ``autograd.grad`` would trigger reductions of its own, and a critic wrapped for
DP by Opacus cannot also be a DDP module. Averaging by hand has none of these traps:
:meth:`Group.average_gradients` is called by the loop between each ``backward()`` and its
``optimizer.step()``, on the one network that step updates - it flattens that network's
gradients (per dtype), runs one ``all_reduce(SUM)``, divides by the world size and copies
them back. Every rank then takes the same optimizer step from the same weights, so the
weights stay identical without ever being sent again (StyleGAN2-ADA does the same).

**Identical start.** The families already initialize their networks from a seeded
generator (``model.seed + 1``); the loop still broadcasts both networks' and its extra
modules' state from rank 0 before the first step (:meth:`Group.broadcast_modules`), which
also covers spectral norm's ``u`` / ``v`` vectors (drawn from torch's global generator).

**Data: a seeded stream per rank.** Both families draw each step's batch with replacement
from the whole (small) training set on the device - a conditioning level then a row
having it (``tabular_gan``'s training-by-sampling), or random images. Rank ``r`` draws from
its own ``torch.Generator`` seeded :meth:`Group.seed` (``model.seed`` on rank 0, a
``SeedSequence`` child of it on the others), so the ranks see independent batches and a
run is reproducible for a given world size. Partitioning the rows instead (a
``DistributedSampler``) would change each rank's level frequencies and leave rare levels
out of some shards, which training-by-sampling cannot draw from. ``model.batch_size`` is
per rank: the global batch is ``N x model.batch_size`` and an epoch is still one pass over
the data (``steps_per_epoch`` is divided by N, at least 1); the learning rate is kept.

**What else is shared.** Per-epoch logs are averaged over the ranks (one all-reduce per
epoch). ADA's ``r_t`` sums are all-reduced before each adjustment, so every rank keeps the
same ``p``. Checkpoints are written by rank 0 with every rank's random-generator states
(gathered); on resume rank 0 reads the newest good checkpoint and sends it to the others,
each taking its own generator states back. BatchNorm running statistics stay per rank
(never synchronised): rank 0's are saved, estimated from its own batches of
``model.batch_size``.

**Rank 0 alone writes.** Only rank 0 takes the ``output.dir`` lock, writes ``model/``,
checkpoints, ``losses.csv`` and ``tracking.json``, talks to MLflow and logs progress (the
other ranks' ``synthgen`` loggers show warnings only). Under ``WORLD_SIZE > 1`` only the
train stage runs; ``ctgan`` (an external package with its own loop) and differential
privacy (the accountant counts one process's noisy steps) are refused by the stage.

Exact reruns hold on CPU (gloo) for a given world size; NCCL reductions on GPUs are
reproducible only statistically.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

#: The environment variables torchrun sets for each process.
RANK_ENV, WORLD_ENV, LOCAL_RANK_ENV = "RANK", "WORLD_SIZE", "LOCAL_RANK"


def env_world_size() -> int:
    """The world size torchrun announced (``WORLD_SIZE``), 1 when unset or malformed."""
    try:
        return max(1, int(os.environ.get(WORLD_ENV, "1")))
    except ValueError:
        return 1


def env_rank() -> int:
    """This process's rank as torchrun announced it (``RANK``), 0 when unset or malformed."""
    try:
        return int(os.environ.get(RANK_ENV, "0"))
    except ValueError:
        return 0


def launched() -> bool:
    """Whether this process is one of several started by torchrun (``WORLD_SIZE > 1``)."""
    return env_world_size() > 1


class Group:
    """The processes training one model together.

    With ``world_size`` 1 (the default: no process group) every method is a no-op or the
    identity, so the loop calls them unconditionally.

    Args:
        rank: this process's rank. Default 0.
        world_size: number of processes. Default 1.
        device: where the small tensors of collectives live (a CUDA device under NCCL).
            Default ``"cpu"``.
    """

    def __init__(self, rank: int = 0, world_size: int = 1, device: str | torch.device = "cpu"):
        self.rank, self.world_size, self.device = rank, world_size, torch.device(device)

    @property
    def active(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that writes and logs."""
        return self.rank == 0

    def seed(self, seed: int) -> int:
        """The seed of this rank's training generator: ``seed`` itself on rank 0 (so one
        process trains exactly as before), an independent child of it on the others."""
        if self.rank == 0:
            return seed
        child = np.random.SeedSequence(seed, spawn_key=(self.rank,))
        return int(child.generate_state(1, np.uint64)[0] >> np.uint64(1))

    # -- collectives ------------------------------------------------------------------------
    def average_gradients(self, module: nn.Module) -> None:
        """Replace each gradient of ``module`` by its mean over the ranks (one all-reduce per
        dtype). Parameters without a gradient are skipped: every rank runs the same code,
        so the same ones have none."""
        if not self.active:
            return
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        for flat, parts in _flat_by_dtype(grads):
            torch.distributed.all_reduce(flat)
            flat.div_(self.world_size)
            _unflatten(flat, parts)

    def broadcast_modules(self, modules: Iterable[nn.Module]) -> None:
        """Give every rank rank 0's parameters and buffers of ``modules``."""
        if not self.active:
            return
        tensors = [t for m in modules for t in m.state_dict(keep_vars=True).values() if isinstance(t, torch.Tensor)]
        with torch.no_grad():
            for flat, parts in _flat_by_dtype([t.data for t in tensors]):
                torch.distributed.broadcast(flat, src=0)
                _unflatten(flat, parts)

    def sum_(self, *tensors: torch.Tensor) -> None:
        """Sum each tensor over the ranks, in place."""
        if not self.active:
            return
        for flat, parts in _flat_by_dtype(list(tensors)):
            torch.distributed.all_reduce(flat)
            _unflatten(flat, parts)

    def mean_logs(self, sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``sums`` (scalar tensors, the same keys on every rank) averaged over the ranks."""
        if not self.active or not sums:
            return sums
        keys = sorted(sums)
        stacked = torch.stack([sums[k].detach().float().reshape(()) for k in keys]).to(self.device)
        torch.distributed.all_reduce(stacked)
        stacked.div_(self.world_size)
        return dict(zip(keys, stacked.cpu().unbind()))

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank (for decisions taken on a clock, such as a
        checkpoint every N seconds)."""
        if not self.active:
            return flag
        value = torch.tensor([int(flag)], device=self.device)
        torch.distributed.broadcast(value, src=0)
        return bool(value.item())

    def from_main(self, compute: Callable[[], Any]) -> Any:
        """``compute()`` run on rank 0 only, its result sent to every rank (pickled by
        torch.distributed within the job; ``compute`` may read files only rank 0 sees)."""
        if not self.active:
            return compute()
        box = [compute() if self.is_main else None]
        torch.distributed.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank (``[value]`` for one process)."""
        if not self.active:
            return [value]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, value)
        return out


def _flat_by_dtype(tensors: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, list[torch.Tensor]]]:
    """``(flat, parts)`` per dtype (and device): the parts concatenated into one 1-d tensor."""
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    for parts in groups.values():
        yield torch.cat([p.reshape(-1) for p in parts]), parts


def _unflatten(flat: torch.Tensor, parts: list[torch.Tensor]) -> None:
    offset = 0
    for p in parts:
        n = p.numel()
        p.copy_(flat[offset : offset + n].view_as(p))
        offset += n


def current() -> Group:
    """The group of the running process group, or a one-process :class:`Group`."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return Group()
    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    return Group(dist.get_rank(), dist.get_world_size(), device)


def backend_for(device: str) -> str:
    """``"nccl"`` for a CUDA training device, ``"gloo"`` otherwise."""
    return "nccl" if str(device).startswith("cuda") else "gloo"


@contextlib.contextmanager
def session(device: str = "cpu") -> Iterator[Group]:
    """Join the process group torchrun set up, for the block; a one-process :class:`Group`
    without torchrun (or when a group is already open, that group: it is left open).

    Under NCCL this rank's GPU is ``cuda:LOCAL_RANK`` (made current, so ``"cuda"`` means
    it). Ranks other than 0 log warnings only on the ``synthgen`` loggers while the
    block runs.

    Args:
        device: the training device (``model.device`` resolved), which picks the backend.
    """
    dist = torch.distributed
    if not launched() or (dist.is_available() and dist.is_initialized()):
        yield current()
        return
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get(LOCAL_RANK_ENV, "0")))
    dist.init_process_group(backend)
    quiet = logging.getLogger("synthgen")
    level = quiet.level
    try:
        group = current()
        if not group.is_main:
            quiet.setLevel(logging.WARNING)
        else:
            log.info("torch.distributed: %d processes (%s); rank 0 writes", group.world_size, backend)
        yield group
    finally:
        quiet.setLevel(level)
        dist.destroy_process_group()
