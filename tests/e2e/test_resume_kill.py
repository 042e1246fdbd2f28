"""A ``synthgen train`` killed with SIGKILL mid-training resumes and ends as if never killed (issue 16).

Real processes, a real SQLite MLflow store, ``tabular_gan`` on penguins (CPU, no DP). The
reference is an uninterrupted train + generate. The other output directory holds a stale
``checkpoint-003000.pt`` of an earlier configuration (the file that used to make every new
checkpoint be pruned); ``synthgen train`` runs there until a checkpoint of epoch 3 exists and
is killed with SIGKILL; the rerun resumes from its last checkpoint. Asserted: the rerun
resumed (not from zero), the generated Parquet equals the reference's, ``losses.csv`` has
every epoch once with the reference's losses, the stale file neither stopped nor lost any
checkpoint, the killed attempt's MLflow run ended as KILLED and the new run has every
epoch's figures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from synthgen import stages
from synthgen.config import TabularModelConfig
from synthgen.data.schema import conform, infer_schema
from synthgen.synthesizers.tabular_gan import TabularGANSynthesizer
from tests.conftest import PENGUINS, ROOT, tiny_params, write_params
from tests.tiny import TINY_GAN

EPOCHS = 12  # 0.1-0.4 s each on a loaded CPU: the kill (after epoch 3) lands well before the end


def _params(root: Path, uri: str | None) -> Path:
    root.mkdir()
    params = tiny_params(root, uri, model={**TINY_GAN, "epochs": EPOCHS, "checkpoint_every": 1})
    return write_params(root / "params.yaml", params)


def _train(params_file: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "synthgen", "train", "--params", str(params_file)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _epochs(checkpoints: Path) -> list[int]:
    """Epochs of this synthgen's checkpoints (``checkpoint-<tag>-<epoch>.pt``)."""
    return sorted(int(p.name[-9:-3]) for p in checkpoints.glob("checkpoint-????????????-*.pt"))


def _other_settings_checkpoint(directory: Path) -> Path:
    """A real checkpoint of another configuration (seed and learning rate)."""
    frame = pd.read_csv(PENGUINS)
    schema = infer_schema(frame)
    cfg = TabularModelConfig(**{**TINY_GAN, "epochs": 1, "seed": 7, "lr": 1e-3})
    TabularGANSynthesizer(schema, cfg, checkpoint_dir=directory).fit(conform(frame, schema))
    (path,) = directory.iterdir()
    return path


def _kill_after_checkpoint(params_file: Path, checkpoints: Path, epoch: int, timeout: float = 240) -> None:
    proc = _train(params_file)
    deadline = time.monotonic() + timeout
    try:
        while not any(e >= epoch for e in _epochs(checkpoints)):
            assert proc.poll() is None, f"train ended before it was killed: {proc.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow  # three trainings, two of them CLI processes: 30-50 s on a shared 2-core box
def test_a_killed_train_resumes_from_its_checkpoint_and_generates_the_same_data(tmp_path, mlflow_uri):
    from mlflow import MlflowClient

    reference = _params(tmp_path / "reference", None)
    stages.ingest(stages.load_params(reference))
    stages.train(stages.load_params(reference))
    stages.generate(stages.load_params(reference))
    ref = tmp_path / "reference" / "out"

    killed = _params(tmp_path / "killed", mlflow_uri)
    out = tmp_path / "killed" / "out"
    stages.ingest(stages.load_params(killed))
    checkpoints = out / "checkpoints"
    checkpoints.mkdir()
    stale = checkpoints / "checkpoint-003000.pt"  # an earlier, longer run of other settings
    stale.write_bytes(_other_settings_checkpoint(tmp_path / "other").read_bytes())

    _kill_after_checkpoint(killed, checkpoints, epoch=3)
    assert not (out / "model").exists() and not (out / "losses.csv").exists()  # killed mid-training
    last = max(_epochs(checkpoints))
    assert 3 <= last < EPOCHS and stale.is_file()
    killed_run = json.loads((out / "tracking.json").read_text())["run_id"]

    rerun = subprocess.run([sys.executable, "-m", "synthgen", "train", "--params", str(killed)], cwd=ROOT,
                           capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed from" in rerun.stderr
    meta = json.loads((out / "model" / "synthesizer.json").read_text())
    assert meta["extra"]["resumed_from"] >= last and meta["extra"]["epochs_run"] == EPOCHS
    stages.generate(stages.load_params(killed))

    assert pd.read_parquet(out / "synthetic.parquet").equals(pd.read_parquet(ref / "synthetic.parquet"))
    losses, ref_losses = pd.read_csv(out / "losses.csv"), pd.read_csv(ref / "losses.csv")
    assert losses["epoch"].tolist() == list(range(EPOCHS))  # every epoch, once
    figures = [c for c in ref_losses.columns if c != "epoch_seconds"]
    pd.testing.assert_frame_equal(losses[figures], ref_losses[figures])
    assert stale.is_file() and _epochs(checkpoints)[-2:] == [EPOCHS - 1, EPOCHS]

    client = MlflowClient(tracking_uri=mlflow_uri)
    new_run = json.loads((out / "tracking.json").read_text())["run_id"]
    assert new_run != killed_run
    assert client.get_run(killed_run).info.status == "KILLED"  # not RUNNING forever
    steps = sorted(m.step for m in client.get_metric_history(new_run, "loss_g"))
    assert steps == list(range(EPOCHS))  # the restored epochs were logged too
