import json
from pathlib import Path

import pytest

from synthgen.config import load_params
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

    assert load_params(ROOT / "params.yaml", ["tracking.uri=null"]).tracking.registered_model == "penguins"
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
