"""What the table and image stages share, shown on real runs: resolved params in MLflow,
the champion alias, and params files / model directories saved before the restructure.

The image run is in-process (a real MLflow SQLite store, real tiny training); the legacy
files cross the process boundary through the CLI, as a user runs them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from synthgen import stages
from synthgen.config import parse_params
from synthgen.data.images import DIGITS, read_images
from synthgen.synthesizers.image_cgan.synthesizer import FAMILY_DEFAULTS as IMAGE_FAMILY_DEFAULTS
from tests.conftest import ROOT
from tests.tiny import TINY_IMAGE

LEGACY = ROOT / "tests" / "fixtures" / "legacy"


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synthgen", *args], capture_output=True, text=True, cwd=cwd)


def test_image_run_logs_resolved_params_and_moves_the_champion_alias(tmp_path, mlflow_uri):
    digits = read_images(DIGITS, 8)
    keep = np.concatenate([np.flatnonzero(digits.labels == c)[:40] for c in range(3)])
    np.savez(tmp_path / "digits.npz", images=digits.images[keep][..., 0], labels=digits.labels[keep])
    model = {k: v for k, v in TINY_IMAGE.items() if k != "batch_size"}  # batch_size unset: the family's (32)
    model["disc_augment"] = "diffaugment"
    params = parse_params({
        "data": {"path": str(tmp_path / "digits.npz"), "kind": "image", "image_size": 8},
        "model": {**model, "epochs": 1},
        "generate": {"rows": 30},
        "validate": {"min": {"real_accuracy": 0.0},  # ceilings merge with the image defaults: all set loose
                     "max": {"exact_copy_rate": 1.0, "image_detection_auc": 1.0, "memorization_share": 1.0}},
        "tracking": {"uri": mlflow_uri, "experiment": "images", "registered_model": "digits-test"},
        "output": {"dir": str(tmp_path / "out")},
    })
    report = stages.run(params)
    assert report["passed"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    client = MlflowClient(tracking_uri=mlflow_uri)
    logged = client.get_run(manifest["mlflow_run_id"]).data.params
    # the image family's resolved batch (32), not the params section's default (500)
    assert logged["model.batch_size"] == str(IMAGE_FAMILY_DEFAULTS["batch_size"]) == "32"
    assert logged["model.epochs"] == "1"
    assert logged["model.disc_augment"] == "diffaugment" and "model.pac" not in logged
    generator = manifest["generator"]
    assert generator["registered_model"] == "digits-test"
    champion = client.get_model_version_by_alias("digits-test", "champion")
    assert str(champion.version) == generator["version"]


def test_legacy_params_files_still_run_through_the_cli(tmp_path):
    """Params files written before the restructure (flat model section, `model.augment`)."""
    small = ["--set", "model.generator_dim=[8]", "--set", "model.discriminator_dim=[8]"]  # seconds, not a minute
    for name, kind, extra in (("params_tabular.yaml", "tabular", []), ("params_images.yaml", "image", small)):
        out = tmp_path / kind
        result = _cli("run", "--params", str(LEGACY / name), "--set", f"output.dir={out}", *extra, cwd=ROOT)
        assert result.returncode in (0, 1), result.stderr[-2000:]  # 1: a verdict, not an error
        assert (out / "manifest.json").is_file() and (out / "model" / "synthesizer.json").is_file()
        saved = json.loads((out / "model" / "synthesizer.json").read_text())["config"]
        if kind == "tabular":  # a table model carries no image options
            assert not {"disc_augment", "augment", "ada_target", "ema"} & set(saved)
            assert "model.disc_augment" in result.stderr  # the foreign option is named, then ignored
        else:
            assert saved["disc_augment"] == "diffaugment" and "pac" not in saved
            assert "model.augment is deprecated" in result.stderr


@pytest.mark.parametrize("family", ["tabular_gan", "ctgan", "image_cgan"])
def test_legacy_model_directories_still_sample_through_the_cli(tmp_path, family):
    """A model directory synthgen 0.1.0 pickled is refused with the command that converts it;
    `synthgen upgrade-model` converts it (a copy, in place) once, and then it samples."""
    model = tmp_path / "model"
    shutil.copytree(LEGACY / f"model_{family}", model)
    out = tmp_path / ("images" if family == "image_cgan" else "rows.csv")
    where = ["--where", "label=3"] if family == "image_cgan" else ["--where", "species=Gentoo"]
    sample = ["sample", "--model", str(model), "--rows", "12", "--seed", "1", "--out", str(out),
              "--allow-unvalidated", *where]  # a bare model directory has no verdict beside it
    refused = _cli(*sample)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    assert (f"synthgen: error: {model}: saved by an older synthgen as a pickle, which can run code when loaded; "
            f"if you trust it, convert it once with `synthgen upgrade-model --model {model}`") in refused.stderr
    assert not out.exists()
    upgraded = _cli("upgrade-model", "--model", str(model))
    assert upgraded.returncode == 0, upgraded.stderr[-2000:]
    assert "runs no code" in upgraded.stdout and not list(model.glob("*.pkl"))
    result = _cli(*sample)
    assert result.returncode == 0, result.stderr[-2000:]
    if family == "image_cgan":
        labels = pd.read_csv(out / "labels.csv")
        assert len(labels) == 12 and set(labels["class"].astype(str)) == {"3"}
    else:
        rows = pd.read_csv(out)
        assert len(rows) == 12 and set(rows["species"]) == {"Gentoo"}
