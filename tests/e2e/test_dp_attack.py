"""The attack on "differential privacy that holds", across the process boundary.

A tiny DP ``tabular_gan`` is trained on penguins through the CLI (``synthgen run`` with
``privacy.epsilon``, checkpoints every epoch, a real MLflow SQLite store). Then, as an
attacker holding only the model directory and the manifest:

* the level-count noise is regenerated exactly as the old code drew it
  (``torch.Generator().manual_seed(model.seed + 2)``, ``randn(len(counts)) *
  histogram_noise * sqrt(n_discrete)``) and subtracted from the saved noisy counts. On
  known counts that subtraction recovers them exactly (shown first); against the run's
  model the error is of the order of the DP noise, because the noise now comes from
  unrecorded OS entropy;
* nothing seed-like for the noise is found in any JSON file of the run, the checkpoints
  or the MLflow run.

The budget's record survives save/load: ``validation.json`` has ``epsilon_spent`` in
``(0, budget]``, ``manifest.json`` holds the privacy ledger (shares adding up to at most
the budget, public items by column name) and ``DATASHEET.md`` renders it with the
not-reproducible note.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from synthgen.synthesizers import load
from tests.conftest import tiny_params, write_params
from tests.tiny import TINY_GAN

BUDGET = 3.0
SEED = 7
CONFIG_SEEDS = {"model.seed", "data.seed", "generate.seed", "augment.seed", "augment.seeds"}  # params' own


def _old_noise(seed: int, n: int, histogram_noise: float, n_discrete: int) -> np.ndarray:
    """The count noise as the old code drew it: a generator seeded with ``model.seed + 2``."""
    gen = torch.Generator().manual_seed(seed + 2)
    return torch.randn(n, generator=gen, dtype=torch.float64).numpy() * histogram_noise * math.sqrt(n_discrete)


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory, mlflow_template):
    root = tmp_path_factory.mktemp("dp-attack")
    shutil.copy(mlflow_template, root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    loose = {"exact_copy_rate": 1.0, "dcr_overfitting_share": 1.0, "mia_auc": 1.0}
    params = tiny_params(root, uri, model={**TINY_GAN, "epochs": 3, "seed": SEED, "checkpoint_every": 1},
                         privacy={"epsilon": BUDGET}, validate={"max": loose})
    result = subprocess.run([sys.executable, "-m", "synthgen", "run", "--params",
                             str(write_params(root / "params.yaml", params))], capture_output=True, text=True)
    assert result.returncode in (0, 1), result.stderr[-3000:]  # 1: a failed verdict, not an error
    return root / "out", uri


def test_the_old_seeding_gives_the_counts_back_exactly():
    """The baseline of the attack: with noise from ``seed + 2`` subtraction is exact."""
    counts = np.array([120.0, 80.0, 75.0, 160.0, 40.0, 33.0])
    noisy = counts + _old_noise(SEED, len(counts), 12.5, 3)
    recovered = noisy - _old_noise(SEED, len(counts), 12.5, 3)
    np.testing.assert_allclose(recovered, counts, rtol=0, atol=1e-9)


def test_the_saved_noisy_counts_do_not_give_the_real_counts_back(dp_run):
    out, _ = dp_run
    model = load(out / "model")  # what the attacker holds
    meta = json.loads((out / "model" / "synthesizer.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    seed, sigma = meta["config"]["seed"], meta["extra"]["histogram_noise"]
    assert seed == SEED and manifest["privacy"]["histogram_noise"] == sigma > 0
    norm = model.normalizer_
    n_discrete = len([s for s in norm.spans if s.kind == "level"])
    std = sigma * math.sqrt(n_discrete)
    release = manifest["privacy"]["privacy_ledger"]["releases"][0]
    assert release["name"] == "level counts" and release["sigma"] == pytest.approx(std)

    # the truth, which the test (not the attacker) computes from the train split
    train = pd.read_parquet(out / "data" / "train.parquet")
    encoded = norm.transform(model.preparer_.transform(train), np.random.default_rng(0))
    codes = encoded.hot[:, norm.n_continuous :] - norm.disc_start
    true = np.bincount(codes.ravel(), minlength=norm.cond_width).astype(float)

    noisy = np.asarray(model.sampling_counts_, dtype=float)  # the release, clipped at 0
    unclipped = noisy > 0
    assert unclipped.sum() >= 5 and len(noisy) == len(true)
    recovered = noisy - _old_noise(seed, len(noisy), sigma, n_discrete)
    error = (recovered - true)[unclipped]
    rmse = float(np.sqrt(np.mean(error**2)))
    assert not np.allclose(recovered[unclipped], true[unclipped], atol=1e-6)
    assert rmse > 0.3 * std, (rmse, std)  # of the order of the DP noise (about sqrt(2) x std)


def test_nothing_seed_like_for_the_noise_is_recorded(dp_run):
    out, uri = dp_run
    forbidden = ("dp_noise", "noise_seed", "secret", "entropy")  # in no key (the ledger's prose may say "secret")
    for path in out.rglob("*.json"):
        text = path.read_text()
        assert "dp_noise" not in text and "noise_seed" not in text, path
        keys = _keys(json.loads(text))
        assert not [k for k in keys if any(w in k.lower() for w in forbidden)], path
        seeds = {k for k in keys if "seed" in k.lower()}
        assert seeds <= {"seed", "seeds"} | CONFIG_SEEDS, (path, seeds)  # seeds: augment's repeat count
    checkpoints = sorted((out / "checkpoints").glob("checkpoint-*.pt"))
    assert checkpoints
    for path in checkpoints:
        state = torch.load(path, map_location="cpu", weights_only=False)
        assert set(state["rngs"]) == {"torch", "numpy"}  # the model.seed streams only
        assert set(state["privacy"]) == {"history", "counts_released", "released_counts"}
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs(experiment_ids=[e.experiment_id for e in client.search_experiments()],
                                filter_string="tags.`synthgen.model` = 'tabular_gan'")
    recorded = {**run.data.params, **run.data.metrics, **run.data.tags}
    assert not [k for k in recorded if any(w in k for w in forbidden)]
    assert {k for k in recorded if "seed" in k} <= CONFIG_SEEDS


def _keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def test_epsilon_and_the_ledger_survive_save_and_load(dp_run):
    out, _ = dp_run
    extra = json.loads((out / "model" / "synthesizer.json").read_text())["extra"]
    validation = json.loads((out / "validation.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    spent = validation["metrics"]["epsilon_spent"]
    assert 0 < spent <= BUDGET and spent == pytest.approx(extra["epsilon_spent"])

    ledger = manifest["privacy"]["privacy_ledger"]
    assert ledger == extra["privacy_ledger"] and manifest["privacy"]["epsilon_spent"] == pytest.approx(spent)
    assert ledger["epsilon"] == BUDGET and ledger["accountant"] == "rdp" and 0 < ledger["delta"] < 1
    shares = [r["epsilon_share"] for r in ledger["releases"]]
    assert [r["name"] for r in ledger["releases"]] == ["level counts", "critic gradients"]
    assert sum(shares) <= BUDGET + 1e-9 and sum(shares) == pytest.approx(ledger["epsilon_spent"])
    assert all(r["mechanism"] and r["what"] for r in ledger["releases"])
    public = {(p["column"], p["what"]) for p in ledger["public"]}
    assert {("species", "domain"), ("bill_length_mm", "bounds"), ("sex", "domain"), (None, "row count")} <= public
    assert all(p["source"] == "data.public_bounds" for p in ledger["public"])
    assert ledger["not_covered"] and ledger["reproducible"] is False and extra["reproducible"] is False

    sheet = (out / "DATASHEET.md").read_text()
    assert "| release | mechanism | noise | share of ε | what |" in sheet
    assert "| level counts | Gaussian mechanism |" in sheet and "| critic gradients | DP-SGD" in sheet
    assert f"of {BUDGET:g}" in sheet and "rdp accountant" in sheet
    assert "- `bill_length_mm`: bounds" in sheet and "- `species`: domain (3 levels)" in sheet
    assert "Not covered by the guarantee:" in sheet and ledger["not_covered"][0] in sheet
    assert "**Not bit-reproducible**, because" in sheet and "spent None" not in sheet
