import json
from pathlib import Path

import pytest

from synthgen.config import PRIVATE_DEFAULT_MODEL, load_params, parse_params
from synthgen.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_repo_params_file_is_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.data.path == "data/penguins.csv"
    assert params.validate_.min["quality_score"] > 0
    assert params.flat()["model.epochs"] == params.model.epochs


def test_tracking_off_turns_the_registry_off_too(tmp_path, caplog):
    from synthgen.config import parse_params
    from synthgen import stages
    from synthgen.stages.common import Layout
    from tests.conftest import tiny_params

    from synthgen.stages.lineage import registry_name

    project = load_params(ROOT / "params.yaml", ["tracking.uri=null"])
    assert project.tracking.registered_model == "auto" and registry_name(project) == "penguins"  # from data.path
    params = parse_params(tiny_params(tmp_path, None, model={"epochs": 1}, tracking={"registered_model": "penguins"}))
    stages.ingest(params)
    with caplog.at_level("INFO", logger="synthgen"):
        stages.train(params)
    recorded = json.loads(Layout(params.out).tracking.read_text())
    assert "generator is not registered" in caplog.text and recorded.get("generator") is None


def test_overrides_are_typed(tmp_path):
    params = load_params(ROOT / "params.yaml", ["model.epochs=3", "privacy.epsilon=2.5", "data.target=null"])
    assert params.model.epochs == 3
    assert params.privacy.epsilon == 2.5
    assert params.data.target is None


def test_a_private_table_run_without_a_model_name_uses_dp_marginals():
    # the repo's params.yaml leaves model.name unset: tabular_gan, or dp_marginals with a budget
    assert load_params(ROOT / "params.yaml").model.name == "tabular_gan"
    private = load_params(ROOT / "params.yaml", ["privacy.epsilon=1"])
    assert private.model.name == PRIVATE_DEFAULT_MODEL == "dp_marginals"
    assert private.flat()["model.name"] == "dp_marginals"
    named = load_params(ROOT / "params.yaml", ["privacy.epsilon=1", "model.name=tabular_gan"])
    assert named.model.name == "tabular_gan"  # an explicit name is kept (DP-SGD)
    images = parse_params({"data": {"path": "x", "kind": "image"}, "model": {}, "privacy": {"epsilon": 1}})
    assert images.model.name != "dp_marginals"  # tables only
    # a DP-SGD knob without model.name: refused before any work, naming the key and the way out
    from synthgen.stages import load_params as load_checked

    refused = r"privacy\.noise_multiplier is a setting of DP-SGD.*model\.name: tabular_gan"
    with pytest.raises(ConfigError, match=refused):
        load_checked(ROOT / "params.yaml", ["privacy.epsilon=1", "privacy.noise_multiplier=2"])
    assert load_checked(ROOT / "params.yaml", ["privacy.epsilon=1", "privacy.noise_multiplier=2",
                                               "model.name=tabular_gan"]).privacy.noise_multiplier == 2
    assert load_checked(ROOT / "params.yaml", ["privacy.epsilon=1"]).model.name == "dp_marginals"


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("model.epoch=3", "model.epoch: unknown key"),
        ("modle.epochs=3", "unknown section 'modle'"),
        ("model.epochs=-1", "model.epochs"),
        ("model.name=nope", "unknown model 'nope'"),
        ("epochs=3", "expected section.key"),
        ("model.epochs", "expected key=value"),
        ("privacy.epsilon=0", "privacy.epsilon"),
        ("model.seed=-1", "model.seed: Input should be greater than or equal to 0"),
        ("data.seed=-7", "data.seed: Input should be greater than or equal to 0"),
        ("generate.seed=4294967296", "generate.seed: Input should be less than or equal to"),
        ("augment.seed=-1", "augment.seed"),
        ("model.lr=.inf", "model.lr: Input should be a finite number"),
        ("model.lr=1e300", "model.lr: Input should be less than or equal to 1"),
        ("privacy.noise_multiplier=1e9", "privacy.noise_multiplier: Input should be less than or equal to 1000"),
        ("validate.max.mia_auc=.nan", "validate.max.mia_auc: Input should be a finite number"),
        ("model.generator_dim=[0]", "model.generator_dim.0"),
        ("model.generator_dim=[256,65536]", "model.generator_dim.1: Input should be less than or equal to 8192"),
        ("model.batch_size=1000000000", "model.batch_size: Input should be less than or equal to 65536"),
        ("model.pac=1000000", "model.pac: Input should be less than or equal to 128"),
        ("model.epochs.x=1", "model.epochs"),
        ("validate.min.quality_score.x=1", "'validate.min.quality_score' is not a section"),
    ],
)
def test_bad_overrides_name_the_key(override, fragment):
    from synthgen.stages import load_params as load_checked  # validated and checked against the registry

    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.").replace("(", r"\(")):
        load_checked(ROOT / "params.yaml", [override])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    missing_path = tmp_path / "p.yaml"
    missing_path.write_text("model: {epochs: 3}\n")
    with pytest.raises(ConfigError, match="data: required key is missing"):
        load_params(missing_path)


def test_partial_thresholds_merge_with_the_defaults():
    """`validate.max: {mia_auc: 0.9}` changes one ceiling and keeps the other privacy ceilings
    (and the floors); the merge is per data kind (the image defaults name image metrics)."""
    from synthgen.config import TABLE_MAX, TABLE_MIN, ValidateConfig
    from synthgen.stages import DEFAULT_THRESHOLDS

    partial = ValidateConfig.model_validate({"max": {"mia_auc": 0.9}})
    merged = partial.with_defaults(TABLE_MIN, TABLE_MAX)
    assert merged.max == {**TABLE_MAX, "mia_auc": 0.9} and merged.min == TABLE_MIN
    relaxed = partial.model_validate({"min": {"quality_score": 0.1}}).with_defaults(*DEFAULT_THRESHOLDS["tabular"])
    assert relaxed.min == {"quality_score": 0.1, "gx_success_rate": 0.8} and relaxed.max == TABLE_MAX
    image_min, image_max = DEFAULT_THRESHOLDS["image"]
    images = partial.model_validate({"max": {"exact_copy_rate": 1.0}}).with_defaults(image_min, image_max)
    assert images.max == {**image_max, "exact_copy_rate": 1.0} and "mia_auc" not in images.max
    assert partial.model_validate({}).with_defaults(image_min, image_max).max == image_max  # unset: the kind's
