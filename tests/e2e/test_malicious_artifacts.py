"""Attacks on "loading a model or a checkpoint can never run code", across the process boundary.

An attacker who can write into a model or run directory plants a real pickle payload (an
object whose ``__reduce__`` calls ``os.system("touch MARKER")``) as a model's weights, its
fitted transformers, ctgan's model object or a training checkpoint. A user then runs
``synthgen sample``, ``synthgen.load`` or a resuming ``synthgen train`` in a fresh
process. The marker file must never appear; sampling and loading fail with one
``synthgen: error:`` line (exit 2) or a ModelError naming the file; training skips the
planted checkpoint with a warning naming it and trains. A directory shaped like an older
synthgen's pickled model is refused without its pickles being read.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from synthgen import stages
from synthgen.config import ImageModelConfig, ModelConfig
from synthgen.data.images import DIGITS, read_images
from synthgen.data.schema import conform, infer_schema
from synthgen.synthesizers import REGISTRY
from tests.conftest import PENGUINS, ROOT, tiny_params, write_params
from tests.tiny import TINY_GAN, TINY_IMAGE, TINY_TABLE

LEGACY = ROOT / "tests" / "fixtures" / "legacy"


class Payload:
    """Unpickled, it runs ``touch MARKER``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synthgen", *args], capture_output=True, text=True, cwd=ROOT)


def _plant(path: Path, marker: Path) -> None:
    """A torch file (``.pt``) carrying the payload, or the bare pickle for any other name."""
    path.unlink(missing_ok=True)
    if path.suffix == ".pt":
        torch.save({"generator": Payload(marker), "options": {}}, path)
    else:
        path.write_bytes(pickle.dumps({"preparer": Payload(marker), "normalizer": Payload(marker)}))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny saved model of each family (fitted in-process: the attack is on loading)."""
    frame = pd.read_csv(PENGUINS)
    schema = infer_schema(frame)
    frame = conform(frame, schema)
    digits = read_images(DIGITS, 8)
    root = tmp_path_factory.mktemp("models")
    REGISTRY["tabular_gan"](schema, ModelConfig(**TINY_GAN)).fit(frame).save(root / "tabular_gan")
    REGISTRY["ctgan"](schema, ModelConfig(**{**TINY_TABLE, "epochs": 1})).fit(frame).save(root / "ctgan")
    REGISTRY["image_cgan"](ImageModelConfig(**{**TINY_IMAGE, "epochs": 1})).fit(
        digits.subset(np.arange(64))).save(root / "image_cgan")
    return {name: root / name for name in ("tabular_gan", "ctgan", "image_cgan")}


@pytest.mark.parametrize("family,planted", [
    ("tabular_gan", "tabular_gan.pt"), ("tabular_gan", "transformers.json"),
    ("ctgan", "ctgan.pt"), ("image_cgan", "image_cgan.pt"),
])
def test_synthgen_sample_never_runs_a_planted_payload(models, family, planted, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(models[family], model)
    marker = tmp_path / "PWNED"
    _plant(model / planted, marker)
    out = tmp_path / ("images" if family == "image_cgan" else "rows.csv")
    result = _cli("sample", "--model", str(model), "--rows", "5", "--seed", "0", "--out", str(out),
                  "--allow-unvalidated")
    assert not marker.exists(), "the planted payload ran"
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("synthgen: error:")]
    assert len(errors) == 1 and str(model / planted) in errors[0]
    reason = "corrupt" if planted.endswith(".json") else "refused: it holds pickled Python objects (it names posix.system)"
    assert reason in errors[0]
    assert not out.exists()


def test_synthgen_load_refuses_every_planted_file_and_never_reads_stray_pickles(models, tmp_path):
    marker = tmp_path / "PWNED"
    cases = {"tabular_gan": ["tabular_gan.pt", "transformers.json"], "ctgan": ["ctgan.pt", "preparer.json"],
             "image_cgan": ["image_cgan.pt"]}
    planted = []
    for family, names in cases.items():
        for name in names:
            model = tmp_path / f"{family}-{name}"
            shutil.copytree(models[family], model)
            _plant(model / name, marker)
            planted.append(model)
    strays = []  # a safe model beside pickles an old loader would have read: they are ignored
    for family, stray in (("tabular_gan", "transformers.pkl"), ("ctgan", "preparer.pkl")):
        model = tmp_path / f"{family}-stray"
        shutil.copytree(models[family], model)
        _plant(model / stray, marker)
        strays.append(model)
    code = (
        "import sys, synthgen\n"
        "from synthgen.errors import ModelError\n"
        "for d in sys.argv[1:-2]:\n"
        "    try:\n"
        "        synthgen.load(d, allow_unvalidated=True)\n"
        "        print('LOADED', d)\n"
        "    except ModelError as exc:\n"
        "        print('REFUSED', exc)\n"
        "for d in sys.argv[-2:]:\n"
        "    print('SAMPLED', len(synthgen.load(d, allow_unvalidated=True).sample(5, seed=0)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, *map(str, planted), *map(str, strays)],
                            capture_output=True, text=True, cwd=ROOT)
    assert not marker.exists(), "the planted payload ran"
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    refused = [line for line in lines if line.startswith("REFUSED")]
    assert len(refused) == len(planted) and not [line for line in lines if line.startswith("LOADED")]
    for model, line in zip(planted, refused):
        assert str(model) in line and ("pickled Python objects" in line or "corrupt" in line)
    assert lines.count("SAMPLED 5") == 2


def test_an_old_pickled_model_directory_is_refused_without_reading_it(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(LEGACY / "model_tabular_gan", model)
    marker = tmp_path / "PWNED"
    _plant(model / "transformers.pkl", marker)
    _plant(model / "tabular_gan.pt", marker)
    result = _cli("sample", "--model", str(model), "--rows", "5", "--out", str(tmp_path / "rows.csv"),
                  "--allow-unvalidated")
    assert not marker.exists(), "the planted payload ran"
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{model}: saved by an older synthgen as a pickle, which can run code when loaded" in result.stderr
    assert f"`synthgen upgrade-model --model {model}`" in result.stderr


@pytest.mark.parametrize("family,planted", [("tabular_gan", "transformers.pkl"), ("tabular_gan", "tabular_gan.pt"),
                                            ("ctgan", "preparer.pkl"), ("image_cgan", "image_cgan.pt")])
def test_upgrade_model_refuses_a_planted_payload_in_an_old_model(family, planted, tmp_path):
    """The explicit conversion reads old pickles through allow-lists: a payload is refused, not run."""
    model = tmp_path / "model"
    shutil.copytree(LEGACY / f"model_{family}", model)
    marker = tmp_path / "PWNED"
    _plant(model / planted, marker)
    result = _cli("upgrade-model", "--model", str(model), "--out", str(tmp_path / "upgraded"))
    assert not marker.exists(), "the planted payload ran"
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"{model / planted}: refused" in result.stderr
    assert not (tmp_path / "upgraded").exists()


def test_a_resumed_train_skips_a_planted_checkpoint_and_trains(tmp_path):
    params = tiny_params(tmp_path, None, model={**TINY_GAN, "epochs": 2, "checkpoint_every": 1})
    params_file = write_params(tmp_path / "params.yaml", params)
    stages.ingest(stages.load_params(params_file))
    checkpoints = tmp_path / "out" / "checkpoints"
    checkpoints.mkdir(parents=True)
    marker = tmp_path / "PWNED"
    _plant(checkpoints / "checkpoint-000001.pt", marker)
    result = _cli("train", "--params", str(params_file))
    assert not marker.exists(), "the planted checkpoint ran"
    assert result.returncode == 0, result.stderr[-2000:]
    warned = [line for line in result.stderr.splitlines() if "checkpoint-000001.pt" in line]
    assert warned and "cannot be loaded safely" in warned[0] and "skipped" in warned[0]
    assert (tmp_path / "out" / "model" / "synthesizer.json").is_file()
    # the planted file (an older synthgen's name, no fingerprint) is left alone; the run wrote its own
    written = sorted(p.name for p in checkpoints.iterdir() if p.name != "checkpoint-000001.pt")
    assert [name[-9:] for name in written] == ["000001.pt", "000002.pt"]
    for name in written:
        torch.load(checkpoints / name, weights_only=True)
