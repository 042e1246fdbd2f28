"""Model files and checkpoints load without running code (issue 14), in-process.

Real tiny models throughout. Weights are plain tensors that ``torch.load(weights_only=True)``
reads with no allow-list, the fitted transformers are JSON, ctgan's own pickle is read
through an allow-list of ctgan/rdt/sklearn/numpy/pandas/torch names; a planted pickle
payload is refused before it runs; a loaded model draws exactly the rows the fitted one
did; a planted checkpoint is skipped with a warning; directories an older synthgen
pickled are refused and converted once by ``upgrade_model``. The CLI side (subprocesses)
is ``tests/e2e/test_malicious_artifacts.py``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from synthgen.config import ImageModelConfig, ModelConfig
from synthgen.data.images import DIGITS, read_images
from synthgen.data.schema import conform, infer_schema
from synthgen.errors import ModelError
from synthgen.synthesizers import REGISTRY, load, upgrade_model
from synthgen.synthesizers.ctgan_backend import CTGAN_GLOBALS
from synthgen.synthesizers.persistence import check_plain, legacy_message
from synthgen.transformers.mode_normalizer import ModeNormalizer
from synthgen.transformers.prepare import TablePreparer
from tests.conftest import PENGUINS
from tests.tiny import TINY_GAN, TINY_IMAGE, TINY_TABLE

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
#: Where every allow-listed ctgan global may come from, and the only builtins allowed.
SAFE_MODULES = {"ctgan", "rdt", "sklearn", "numpy", "pandas", "torch"}
SAFE_BUILTINS = {"builtins.slice", "builtins.bytes"}
NEVER = {"os", "posix", "nt", "subprocess", "sys", "eval", "exec", "getattr", "__import__", "system",
         "importlib", "runpy", "pickle", "compile", "open", "shutil", "functools", "operator"}
FILES = {"tabular_gan": "tabular_gan.pt", "ctgan": "ctgan.pt", "image_cgan": "image_cgan.pt"}


class Payload:
    """What an attacker plants: unpickling it runs ``touch MARKER`` (``os.system``)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def _digest(directory: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        h.update(path.relative_to(directory).as_posix().encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def penguins():
    frame = pd.read_csv(PENGUINS)
    schema = infer_schema(frame)
    return schema, conform(frame, schema)


@pytest.fixture(scope="module")
def models(penguins, tmp_path_factory):
    """One tiny fitted model of each family, saved: ``{family: (model, directory)}``."""
    schema, frame = penguins
    digits = read_images(DIGITS, 8)
    fitted = {
        "tabular_gan": REGISTRY["tabular_gan"](schema, ModelConfig(**TINY_GAN)).fit(frame),
        "ctgan": REGISTRY["ctgan"](schema, ModelConfig(**TINY_TABLE)).fit(frame),
        "image_cgan": REGISTRY["image_cgan"](ImageModelConfig(**{**TINY_IMAGE, "epochs": 1})).fit(
            digits.subset(np.arange(64))),
    }
    root = tmp_path_factory.mktemp("models")
    for name, model in fitted.items():
        model.save(root / name)
    return {name: (model, root / name) for name, model in fitted.items()}


def _same(a, b) -> bool:
    if isinstance(a, pd.DataFrame):
        return a.equals(b)
    return np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)


def test_the_payload_is_real(tmp_path):
    """Unrestricted unpickling of the planted object does run it: the tests below are not vacuous."""
    pickle.loads(pickle.dumps(Payload(tmp_path / "marker")))
    assert (tmp_path / "marker").exists()


@pytest.mark.parametrize("family", ["tabular_gan", "ctgan", "image_cgan"])
def test_saved_models_hold_only_tensors_and_json_and_reload_exactly(models, family):
    model, directory = models[family]
    files = {p.name for p in directory.iterdir()}
    assert not {f for f in files if f.endswith(".pkl")}
    meta = json.loads((directory / "synthesizer.json").read_text())
    assert meta["format"] == 2
    weights = directory / FILES[family]
    unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(weights))
    if family == "ctgan":  # ctgan's own pickle: only allow-listed names, from the allowed modules
        assert unsafe <= set(CTGAN_GLOBALS) and unsafe
        assert json.loads((directory / "preparer.json").read_text())["schema"]
    else:  # plain tensors: torch's default weights_only set suffices
        assert unsafe == set()
        torch.load(weights, weights_only=True)
    if family == "tabular_gan":
        assert set(json.loads((directory / "transformers.json").read_text())) == {"preparer", "normalizer"}
    loaded = load(directory)
    assert _same(model.sample(40, seed=5), loaded.sample(40, seed=5))
    if family == "tabular_gan":
        cond = {"species": "Chinstrap", "bill_length_mm": (40, 50)}
        assert _same(model.sample(12, conditions=cond, seed=6), loaded.sample(12, conditions=cond, seed=6))
    if family == "image_cgan":
        assert _same(model.sample(6, conditions={"label": 2}, seed=1), loaded.sample(6, conditions={"label": 2}, seed=1))


def test_the_ctgan_allow_list_names_only_safe_modules_and_no_code_runners():
    for name in CTGAN_GLOBALS:
        module, attr = name.rsplit(".", 1)
        assert name in SAFE_BUILTINS or module.split(".")[0] in SAFE_MODULES, name
        assert not NEVER & {*module.split("."), attr}, name


def test_preparer_and_normalizer_round_trip_through_json(penguins):
    schema, frame = penguins
    prep = TablePreparer(schema, max_categories=3).fit(frame)  # pools rare islands/levels
    again = TablePreparer.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert again.to_dict() == prep.to_dict()
    prepared = prep.transform(frame)
    pd.testing.assert_frame_equal(again.transform(frame), prepared)
    rng = np.random.default_rng
    pd.testing.assert_frame_equal(again.inverse_transform(prepared, rng(1)), prep.inverse_transform(prepared, rng(1)))
    with pytest.raises(ValueError, match="cannot set"):
        TablePreparer.from_dict({**prep.to_dict(), "inverse_transform": 1})  # never shadows a method
    bounds = {c: (float(frame[c].min()), float(frame[c].max())) for c in ("bill_length_mm", "body_mass_g")}
    for norm in (ModeNormalizer(max_modes=4).fit(prepared, prep.discrete_columns),
                 ModeNormalizer(public_modes=True, bounds={**bounds, **{c: (0.0, 1.0) for c in prepared
                                if c not in prep.discrete_columns and c not in bounds}})
                 .fit(prepared, prep.discrete_columns)):
        back = ModeNormalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
        assert back.spans == norm.spans and back.width == norm.width and back.disc_start == norm.disc_start
        for attr in ("means_", "stds_", "weights_", "active_", "mode_starts_", "level_starts_", "n_modes_"):
            assert np.array_equal(getattr(back, attr), getattr(norm, attr)), attr
        a, b = norm.transform(prepared, rng(2)), back.transform(prepared, rng(2))
        assert np.array_equal(a.alpha, b.alpha) and np.array_equal(a.hot, b.hot)
        pd.testing.assert_frame_equal(back.decode_hot(a.alpha, a.hot), norm.decode_hot(a.alpha, a.hot))


def test_weights_files_take_only_plain_values(tmp_path):
    check_plain({"w": torch.zeros(2), "opts": {"betas": (0.5, 0.9), "loss": "logistic", "n": None}}, "state")
    for bad in (np.zeros(2), np.float64(1.0), Payload(tmp_path / "m")):
        with pytest.raises(TypeError, match="state"):
            check_plain({"x": [bad]}, "state")


@pytest.mark.parametrize("family", ["tabular_gan", "ctgan", "image_cgan"])
def test_a_planted_payload_in_the_weights_is_refused_before_it_runs(models, family, tmp_path):
    directory = tmp_path / "model"
    shutil.copytree(models[family][1], directory)
    torch.save({"generator": Payload(tmp_path / "marker")}, directory / FILES[family])
    with pytest.raises(ModelError, match=rf"{FILES[family]}: refused: it holds pickled Python objects .*posix\.system"):
        load(directory)
    assert not (tmp_path / "marker").exists()


@pytest.mark.parametrize("family,name", [("tabular_gan", "transformers.json"), ("ctgan", "preparer.json")])
def test_a_pickle_planted_as_the_transformers_is_refused_and_stray_pickles_are_never_read(models, family, name,
                                                                                          tmp_path):
    directory = tmp_path / "model"
    shutil.copytree(models[family][1], directory)
    stray = "transformers.pkl" if family == "tabular_gan" else "preparer.pkl"
    (directory / stray).write_bytes(pickle.dumps(Payload(tmp_path / "marker")))
    assert _same(load(directory).sample(10, seed=0), models[family][0].sample(10, seed=0))  # the .pkl is ignored
    (directory / name).write_bytes(pickle.dumps({"preparer": Payload(tmp_path / "marker")}))
    with pytest.raises(ModelError, match=rf"{name}: corrupt"):
        load(directory)
    assert not (tmp_path / "marker").exists()


def test_checkpoints_are_plain_and_a_planted_one_is_skipped_with_a_warning(penguins, tmp_path, caplog):
    schema, frame = penguins
    cfg = ModelConfig(**{**TINY_GAN, "epochs": 2, "checkpoint_every": 1})
    ckpt = tmp_path / "checkpoints"
    first = REGISTRY["tabular_gan"](schema, cfg, checkpoint_dir=ckpt).fit(frame)
    saved = sorted(p.name for p in ckpt.iterdir())  # checkpoint-<settings tag>-<epoch>.pt
    assert [name[-9:] for name in saved] == ["000001.pt", "000002.pt"]
    for name in saved:  # tensors and plain values only: no allow-list needed
        assert torch.serialization.get_unsafe_globals_in_checkpoint(ckpt / name) == []
        state = torch.load(ckpt / name, weights_only=True)
        assert isinstance(state["rngs"]["torch"][1], torch.Tensor)
    torch.save({"fingerprint": Payload(tmp_path / "marker")}, ckpt / saved[1])  # the newest, replaced
    with caplog.at_level(logging.WARNING, logger="synthgen.training.loop"):
        resumed = REGISTRY["tabular_gan"](schema, cfg, checkpoint_dir=ckpt).fit(frame)
    assert not (tmp_path / "marker").exists()
    assert any(saved[1] in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)
    assert resumed.loop_result_.resumed_from == 1  # the last good one
    assert _same(first.sample(20, seed=1), resumed.sample(20, seed=1))


def test_old_pickled_directories_are_refused_then_converted_once(tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(LEGACY / "model_tabular_gan", copy)
    before = _digest(copy)
    with pytest.raises(ModelError) as refused:
        load(copy)
    assert str(refused.value) == legacy_message(copy)
    assert "synthgen upgrade-model --model" in str(refused.value)
    out = upgrade_model(copy, tmp_path / "new")
    assert out == tmp_path / "new" and _digest(copy) == before  # the original is untouched
    assert {p.name for p in out.iterdir()} == {"synthesizer.json", "tabular_gan.pt", "transformers.json", "params.json"}
    old_meta = json.loads((copy / "synthesizer.json").read_text())
    new_meta = json.loads((out / "synthesizer.json").read_text())
    assert new_meta == {**old_meta, "format": 2}  # the record is kept
    rows = load(out).sample(10, seed=0)
    with pytest.raises(ModelError, match="already exists"):
        upgrade_model(copy, out)
    assert upgrade_model(copy) == copy  # in place: the pickles are gone
    assert not list(copy.glob("*.pkl")) and load(copy).sample(10, seed=0).equals(rows)
    assert upgrade_model(copy) == copy and load(copy).sample(10, seed=0).equals(rows)  # a safe one: left as is


def test_an_old_directory_is_refused_without_reading_its_pickles(tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(LEGACY / "model_tabular_gan", copy)
    (copy / "transformers.pkl").write_bytes(pickle.dumps(Payload(tmp_path / "marker")))
    torch.save({"generator": Payload(tmp_path / "marker")}, copy / "tabular_gan.pt")
    with pytest.raises(ModelError, match="saved by an older synthgen as a pickle"):
        load(copy)
    assert not (tmp_path / "marker").exists()
