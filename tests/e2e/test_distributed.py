"""torchrun training with gloo on CPU: 2 processes keep identical weights after every step,
only rank 0 writes under ``output.dir``, and the 2-process model passes the same gate as the
1-process one (issue 19).

The multi-process tests launch ``python -m torch.distributed.run --nproc_per_node=2`` on
``tests/e2e/rank_probe.py``, which runs the ``synthgen`` CLI with test-only probes (weight
hashes per step, an audit hook on writes) installed through the Python API. The refusals
need no second process: torchrun's environment variables are enough.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from synthgen.errors import ConfigError
from tests.conftest import ROOT, tiny_params, write_params
from tests.tiny import TINY_GAN, TINY_IMAGE

PROBE = ROOT / "tests" / "e2e" / "rank_probe.py"
TORCHRUN_ENV = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}


def synthgen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synthgen", *args], capture_output=True, text=True, cwd=ROOT)


def torchrun(probe_dir: Path, out_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SYNTHGEN_PROGRESS": "log"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(PROBE), str(probe_dir), str(out_dir), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def weights(probe_dir: Path, rank: int) -> list[str]:
    return (probe_dir / f"weights-{rank}.txt").read_text().split("\n")[:-1]


def without_rng(lines: list[str]) -> list[str]:
    return [line.split(" rng=")[0] for line in lines]


def assert_identical_ranks(probe_dir: Path, steps: int) -> None:
    rank0, rank1 = weights(probe_dir, 0), weights(probe_dir, 1)
    assert sum(line.startswith("step ") for line in rank0) == steps, rank0
    assert all("world=2" in line for line in rank0 if line.startswith("step "))
    # every step: the critic after its update, the generator after the previous step; every epoch: both
    assert without_rng(rank0) == without_rng(rank1)
    assert len({line.split("generator=")[1].split()[0] for line in rank0}) > 2  # the weights did move
    rngs = [{line.split(" rng=")[1] for line in lines if " rng=" in line} for lines in (rank0, rank1)]
    assert not rngs[0] & rngs[1]  # ... while each rank drew its own batches


def written(probe_dir: Path, rank: int) -> list[str]:
    return json.loads((probe_dir / f"writes-{rank}.json").read_text())


# -- tabular_gan on the demo table ---------------------------------------------------------------
@pytest.fixture(scope="module")
def table_runs(tmp_path_factory):
    """Params (tiny tabular_gan, 4 epochs) for a 1-process and a 2-process run on penguins;
    the 2-process one ingested (one process) and trained under torchrun with the probes."""
    root = tmp_path_factory.mktemp("distributed-table")
    files = {}
    for name in ("one", "two"):
        params = tiny_params(root / name, None, model={**TINY_GAN, "epochs": 4, "checkpoint_every": 2})
        files[name] = write_params(root / f"{name}.yaml", params)
    out = root / "two" / "out"
    ingest = synthgen("ingest", "--params", str(files["two"]))
    assert ingest.returncode == 0, ingest.stderr
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    result = torchrun(root / "probe", out, "train", "--params", str(files["two"]))
    assert result.returncode == 0, result.stderr[-3000:]
    return root, files, before, result


@pytest.mark.slow
def test_two_ranks_keep_identical_weights_after_every_step(table_runs):
    root, _, _, result = table_runs
    # 275 train rows, batch 100 per rank: 1 step per epoch (275 // 200), 4 epochs
    assert_identical_ranks(root / "probe", steps=4)
    assert "2 processes (gloo)" in result.stderr


@pytest.mark.slow
def test_only_rank_0_writes_under_output_dir(table_runs):
    root, _, before, result = table_runs
    out = root / "two" / "out"
    assert written(root / "probe", 1) == []
    mine = "\n".join(written(root / "probe", 0))
    for artifact in ("model", "losses.csv", "tracking.json", ".synthgen.lock", "checkpoints/checkpoint-"):
        assert f"{out}/{artifact}" in mine, artifact
    assert {p for p in before if p.exists()} == set(before)  # nothing of ingest's removed
    epochs = [line for line in result.stderr.splitlines() if " epoch " in line and "/4 " in line]
    assert len(epochs) == 4  # progress logged once (rank 0), not once per rank


@pytest.mark.slow
def test_two_process_model_passes_the_same_gate_as_one_process(table_runs):
    root, files, _, _ = table_runs
    for step in ("generate", "validate"):
        result = synthgen(step, "--params", str(files["two"]))
        assert result.returncode == 0, (step, result.stderr[-2000:])
    reference = synthgen("run", "--params", str(files["one"]))
    assert reference.returncode == 0, reference.stderr[-2000:]
    verdicts = {name: json.loads((root / name / "out" / "validation.json").read_text()) for name in ("one", "two")}
    checks = {name: {c["name"] for c in v["checks"]} for name, v in verdicts.items()}
    assert verdicts["one"]["passed"] and verdicts["two"]["passed"], verdicts
    assert checks["one"] == checks["two"]  # the same gate
    meta = json.loads((root / "two" / "out" / "model" / "synthesizer.json").read_text())
    assert meta["extra"]["epochs_run"] == 4


# -- image_cgan: ADA, R1, checkpoints and resume -----------------------------------------------------
@pytest.mark.slow
def test_image_cgan_two_ranks_identical_and_resume_continues_exactly(tmp_path):
    from synthgen.data.images import read_images
    from synthgen.data.sources import DIGITS

    digits = read_images(DIGITS, 8)
    keep = np.random.default_rng(0).choice(len(digits.labels), 100, replace=False)
    np.savez(tmp_path / "digits.npz", images=digits.images[keep][..., 0], labels=digits.labels[keep])
    model = {**TINY_IMAGE, "batch_size": 16, "disc_augment": "ada", "ada_interval": 2, "ada_kimg": 0.1,
             "r1_gamma": 1.0, "checkpoint_every": 1}

    def params(name: str, epochs: int) -> Path:
        return write_params(tmp_path / f"{name}-{epochs}.yaml", {
            "data": {"path": str(tmp_path / "digits.npz"), "kind": "image", "image_size": 8, "holdout": 0.2},
            "model": {**model, "epochs": epochs}, "tracking": {"uri": None},
            "output": {"dir": str(tmp_path / name)}})

    for name in ("whole", "resumed"):
        assert synthgen("ingest", "--params", str(params(name, 3))).returncode == 0
    whole = torchrun(tmp_path / "p-whole", tmp_path / "whole", "train", "--params", str(params("whole", 3)))
    assert whole.returncode == 0, whole.stderr[-3000:]
    # 80 train images, 16 per rank: 2 steps per epoch; ADA adjusts p every 2 steps from all ranks' r_t
    assert_identical_ranks(tmp_path / "p-whole", steps=6)
    first = torchrun(tmp_path / "p-first", tmp_path / "resumed", "train", "--params", str(params("resumed", 2)))
    assert first.returncode == 0, first.stderr[-3000:]
    second = torchrun(tmp_path / "p-second", tmp_path / "resumed", "train", "--params", str(params("resumed", 3)))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stderr
    for rank in (0, 1):  # the resumed ranks continue each from its own generator state: as if never stopped
        assert weights(tmp_path / "p-second", rank) == weights(tmp_path / "p-whole", rank)[-3:]
    assert written(tmp_path / "p-second", 1) == []


# -- refusals (no second process needed) ----------------------------------------------------------------
@pytest.mark.parametrize("model, privacy, command, needle", [
    ({"name": "ctgan"}, {}, "train", "ctgan does not train under torchrun"),
    (TINY_GAN, {"epsilon": 1.0}, "train", "privacy.epsilon with WORLD_SIZE=2"),
    (TINY_GAN, {}, "generate", "synthgen generate runs in one process"),
    (TINY_GAN, {}, "run", "synthgen run runs in one process"),
])
def test_torchrun_refuses_what_it_cannot_distribute(tmp_path, monkeypatch, model, privacy, command, needle):
    from synthgen import stages
    from synthgen.config import Params

    for key, value in TORCHRUN_ENV.items():
        monkeypatch.setenv(key, value)
    params = Params(**tiny_params(tmp_path, None, model=model, privacy=privacy))
    with pytest.raises(ConfigError, match=needle):
        stages.check_distributed(command, params)
    assert not (tmp_path / "out").exists()


def test_rank_1_takes_no_lock_and_one_process_is_unchanged(tmp_path, monkeypatch):
    from synthgen import stages
    from synthgen.config import Params
    from synthgen.training.distributed import Group, current

    params = Params(**tiny_params(tmp_path, None, model=TINY_GAN))
    for key, value in TORCHRUN_ENV.items():
        monkeypatch.setenv(key, value)
    with stages.locked(params) as root:
        assert root == params.out and not (tmp_path / "out").exists()
    for key in TORCHRUN_ENV:
        monkeypatch.delenv(key)
    group = current()
    assert (group.world_size, group.rank, group.is_main, group.seed(7)) == (1, 0, True, 7)
    assert Group(rank=1, world_size=2).seed(7) != 7
    with stages.locked(params):
        assert (tmp_path / "out" / ".synthgen.lock").exists()
