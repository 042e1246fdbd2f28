"""Run the ``synthgen`` CLI in one torchrun process with two test-only probes.

    python -m torch.distributed.run --nproc_per_node=2 tests/e2e/rank_probe.py PROBE_DIR OUT_DIR train --params ...

* **Weights.** Every :class:`~synthgen.training.loop.GANLoop` built in the process gets its
  loss object's ``generator_loss`` wrapped: when step ``s``'s generator update begins (the
  critic has just taken step ``s``) the SHA-256 of the critic's and of the generator's
  parameters is recorded, with the hash of this rank's training-generator state (which
  must differ between ranks: they draw different batches); a callback records both
  networks again after each epoch. The lines go to ``PROBE_DIR/weights-<rank>.txt``.
* **Writes.** An audit hook records every write-mode open, rename, removal and mkdir of a
  path under ``OUT_DIR`` into ``PROBE_DIR/writes-<rank>.json``.

Nothing is patched in the library's files: the probes are installed through its Python API
before the CLI runs. ``PROBE_DIR`` must lie outside ``OUT_DIR``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
PATH_EVENTS = {"os.rename": 2, "os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.truncate": 1, "os.link": 2,
               "os.symlink": 2, "shutil.rmtree": 1, "shutil.move": 2}


def digest(module) -> str:
    import torch

    params = [p.detach().reshape(-1).float().cpu() for p in module.parameters()]
    return hashlib.sha256(torch.cat(params).numpy().tobytes()).hexdigest()[:16]


def main() -> None:
    probe_dir, out_dir = Path(sys.argv[1]), os.path.abspath(sys.argv[2])
    rank = os.environ.get("RANK", "0")
    writes: list[str] = []
    lines: list[str] = []

    def under_out(path) -> bool:
        if isinstance(path, int) or path is None:
            return False
        full = os.path.abspath(os.fsdecode(path))
        return full == out_dir or full.startswith(out_dir + os.sep)

    def audit(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & WRITE_FLAGS)
            if writing and under_out(path):
                writes.append(f"open {os.fsdecode(path)}")
        elif event in PATH_EVENTS:
            for path in args[: PATH_EVENTS[event]]:
                if under_out(path):
                    writes.append(f"{event} {os.fsdecode(path)}")

    sys.addaudithook(audit)

    from synthgen.training.callbacks import Callback
    from synthgen.training.loop import GANLoop

    class EpochHashes(Callback):
        def __init__(self, loop: GANLoop):
            self.loop = loop

        def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
            lines.append(f"epoch {epoch} critic={digest(self.loop.critic)} generator={digest(self.loop.generator)}")

    original = GANLoop.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        generator_loss = self.loss.generator_loss
        torch_rng = self.rngs["torch"]

        def probed(step: int):
            state = hashlib.sha256(torch_rng.get_state().numpy().tobytes()).hexdigest()[:16]
            lines.append(f"step {step} critic={digest(self.critic)} generator={digest(self.generator)} "
                         f"world={self.group.world_size} rng={state}")
            return generator_loss(step)

        self.loss.generator_loss = probed
        self.callbacks.callbacks.append(EpochHashes(self))

    GANLoop.__init__ = init
    from synthgen.cli import cli

    try:
        cli.main(args=sys.argv[3:], prog_name="synthgen")
    finally:
        probe_dir.mkdir(parents=True, exist_ok=True)
        (probe_dir / f"weights-{rank}.txt").write_text("\n".join(lines) + "\n")
        (probe_dir / f"writes-{rank}.json").write_text(json.dumps(writes))


if __name__ == "__main__":
    main()
