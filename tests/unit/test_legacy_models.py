"""Models saved by synthgen 0.1.0 (pickles) are refused, then convert once and sample.

``tests/fixtures/legacy/model_*`` were written by synthgen 0.1.0: pickled files
(``transformers.pkl``, ``preparer.pkl``, pickled ``.pt``), and a saved config that is
one flat ``model`` section (table models carry ``augment: ada``, ``ema`` ...). Loading
one is refused with a ModelError naming ``synthgen upgrade-model`` (issue 14);
``upgrade_model`` to a new directory converts it (the fixtures are never written); the
converted model keeps the old record, keeps only each family's options, silently, samples
exactly as the old one did, and saves again.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthgen.config import ImageModelConfig, TabularModelConfig
from synthgen.errors import ModelError
from synthgen.synthesizers import REGISTRY, load, upgrade_model
from synthgen.synthesizers.persistence import legacy_message

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"


def _digest(directory: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        h.update(path.relative_to(directory).as_posix().encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def _load(name: str, tmp_path: Path):
    """Refused as it is; converted to ``tmp_path/upgraded`` and loaded from there."""
    directory = LEGACY / f"model_{name}"
    before = _digest(directory)
    with pytest.raises(ModelError) as refused:
        load(directory)
    assert str(refused.value) == legacy_message(directory)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # an old key is renamed silently on load
        upgraded = upgrade_model(directory, tmp_path / "upgraded")
        model = load(upgraded)
    assert _digest(directory) == before
    meta = json.loads((directory / "synthesizer.json").read_text())
    assert json.loads((upgraded / "synthesizer.json").read_text()) == {**meta, "format": 2}
    assert not list(upgraded.glob("*.pkl"))
    assert type(model) is REGISTRY[name] and model.name == name
    return model, meta


def _resave(model, meta: dict, tmp_path: Path):
    """Saved again, the meta file has the old keys in the old order, with ``format`` after
    ``name``; the copy loads."""
    model.save(tmp_path / "again")
    resaved = json.loads((tmp_path / "again" / "synthesizer.json").read_text())
    assert list(resaved) == ["name", "format", *list(meta)[1:]]
    return load(tmp_path / "again")


@pytest.mark.parametrize("name", ["tabular_gan", "ctgan"])
def test_legacy_table_models_load_and_sample(name, tmp_path):
    model, meta = _load(name, tmp_path)
    columns = [c["name"] for c in meta["schema"]["columns"]]
    assert type(model.config) is TabularModelConfig
    assert model.config.epochs == meta["config"]["epochs"] and model.config.pac == meta["config"]["pac"]
    assert not hasattr(model.config, "disc_augment")  # the flat section's image options are dropped
    assert model.n_train_ == meta["n_train"] and model.train_seconds_ == meta["train_seconds"]
    conditions = {"species": "Adelie"} if name == "tabular_gan" else None
    out = model.sample(20, conditions=conditions, seed=0)
    assert isinstance(out, pd.DataFrame) and out.shape == (20, len(columns))
    assert list(out.columns) == columns
    if conditions:
        assert (out["species"] == "Adelie").all()
    pd.testing.assert_frame_equal(out, model.sample(20, conditions=conditions, seed=0))
    pd.testing.assert_frame_equal(out, _resave(model, meta, tmp_path).sample(20, conditions=conditions, seed=0))


def test_legacy_image_model_loads_and_samples(tmp_path):
    model, meta = _load("image_cgan", tmp_path)
    assert type(model.config) is ImageModelConfig
    assert model.config.disc_augment == meta["config"]["augment"] == "diffaugment"
    assert model.config.ema == meta["config"]["ema"]
    assert model.classes_ == meta["classes"] and model.n_train_ == meta["n_train"]
    # saved before ImageCGANOptions.upsample existed: loads with the nearest-neighbour upsampling it was
    # trained with (the DiffAugment policy only matters for training: the default)
    assert json.loads(json.dumps(model.extra_meta()["options"])) == {
        **meta["extra"]["options"], "upsample": "nearest", "diffaugment_policy": ["color", "translation", "cutout"]}
    images, labels = model.sample(10, seed=0)
    size, channels = meta["image_size"], meta["channels"]
    assert images.shape == (10, size, size, channels) and images.dtype == np.uint8
    assert labels.shape == (10,) and set(labels) <= set(range(len(meta["classes"])))
    again = model.sample(10, seed=0)
    assert np.array_equal(again.images, images) and np.array_equal(again.labels, labels)
    assert np.array_equal(_resave(model, meta, tmp_path).sample(10, seed=0).images, images)
    threes = model.sample(10, conditions={"label": "3"}, seed=1)
    assert (threes.labels == meta["classes"].index("3")).all()
