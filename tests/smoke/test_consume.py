"""Consuming synthgen's output: the registered pyfunc generator, `synthgen sample`,
`synthgen.load_dataset` and the datasheet, on two real tiny pipeline runs (one passing,
one rejected) that share one real MLflow SQLite store and registered model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

import synthgen
from synthgen.cli import cli
from synthgen.config import parse_params
from synthgen.consume import normalize_conditions, parse_where, requests_from_frame
from synthgen.data.schema import TableSchema
from synthgen.errors import ConditionError, DataError
from synthgen.io import file_hash
from synthgen import stages
from tests.conftest import tiny_params
from tests.tiny import TINY_GAN

NAME = "penguins-gen"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mlflow_template):
    """Run 1 passes (version 1: candidate, then champion); run 2 is rejected (version 2: candidate only)."""
    import torch

    torch.set_num_threads(2)
    tmp = tmp_path_factory.mktemp("consume")
    shutil.copy(mlflow_template, tmp / "mlflow.db")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    outs = {}
    for label, floor in (("passed", 0.1), ("rejected", 0.999)):
        raw = tiny_params(tmp, uri, model=TINY_GAN, tracking={"registered_model": NAME},
                          validate={"min": {"quality_score": floor, "gx_success_rate": 0.0}},
                          output={"dir": str(tmp / label)})
        report = stages.run(parse_params(raw))
        assert report["passed"] is (label == "passed")
        outs[label] = tmp / label
    return tmp, uri, outs


# -- the registered pyfunc generator ---------------------------------------------------
def test_registry_aliases_follow_the_verdict(runs):
    _, uri, outs = runs
    client = MlflowClient(tracking_uri=uri)
    champion = client.get_model_version_by_alias(NAME, "champion")
    candidate = client.get_model_version_by_alias(NAME, "candidate")
    assert str(champion.version) == "1" and str(candidate.version) == "2"  # the rejected run never became champion
    for label, version in (("passed", "1"), ("rejected", "2")):
        generator = json.loads((outs[label] / "tracking.json").read_text())["generator"]
        assert generator["version"] == version
        mv = client.get_model_version(NAME, version)
        assert mv.tags["synthgen.model_id"] == generator["model_id"] and mv.run_id == json.loads(
            (outs[label] / "manifest.json").read_text())["mlflow_run_id"]
    logged = client.get_logged_model(champion.tags["synthgen.model_id"])
    assert "READY" in str(logged.status) and logged.source_run_id == champion.run_id


FRESH = textwrap.dedent("""
    import json, sys
    import mlflow, pandas as pd
    model = mlflow.pyfunc.load_model(sys.argv[1])
    plain = model.predict(pd.DataFrame({"rows": [7], "seed": [3]}))
    again = model.predict(pd.DataFrame({"rows": [7], "seed": [3]}))
    many = model.predict(pd.DataFrame({
        "rows": [5, 6], "seed": [1, 2],
        "conditions": ['{"species": "Chinstrap"}', {"bill_depth_mm": {"low": 15, "high": 17}, "sex": "female"}],
    }))
    print(json.dumps({
        "plain": plain.to_dict("list"), "same_seed_same_rows": plain.equals(again),
        "many": many.to_dict("list"), "modules": sorted(m for m in sys.modules if m.startswith("synthgen")),
        "cwd_has_outputs": __import__("os").path.exists("passed"),
    }, default=str))
""")


def test_pyfunc_loads_by_alias_in_a_fresh_process(runs, tmp_path):
    tmp, uri, outs = runs
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "probe.py").write_text(FRESH)
    moved = tmp / "moved-away"
    os.replace(tmp / "passed", moved)  # no access to the original output dir
    try:
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
        result = subprocess.run([sys.executable, "probe.py", f"models:/{NAME}@champion"], cwd=elsewhere,
                                env=env, capture_output=True, text=True, timeout=240)
    finally:
        os.replace(moved, tmp / "passed")
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    plain, many = pd.DataFrame(out["plain"]), pd.DataFrame(out["many"])
    columns = TableSchema.load(outs["passed"] / "schema.json").names
    assert len(plain) == 7 and list(plain.columns) == columns and out["same_seed_same_rows"]
    assert len(many) == 11 and list(many.columns) == columns
    assert (many["species"].iloc[:5] == "Chinstrap").all()
    depth = many["bill_depth_mm"].iloc[5:].astype(float)
    assert depth.between(15, 17).all() and (many["sex"].iloc[5:] == "female").all()
    assert "synthgen.tracking.pyfunc" in out["modules"]


def test_pyfunc_rejects_bad_requests(runs, monkeypatch):
    tmp, uri, _ = runs
    import mlflow

    from synthgen.tracking.pyfunc import fetch_synthesizer

    model = fetch_synthesizer(f"models:/{NAME}/1", uri)
    assert model.sample(3, seed=0).shape[0] == 3
    with pytest.raises(ConditionError, match="'rows' column"):
        requests_from_frame(pd.DataFrame({"n": [3]}))
    with pytest.raises(ConditionError, match="rows must be a positive integer"):
        requests_from_frame(pd.DataFrame({"rows": [0]}))
    with pytest.raises(ConditionError, match="not valid JSON"):
        requests_from_frame(pd.DataFrame({"rows": [2], "conditions": ["{species: Adelie"]}))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}@candidate")
    with pytest.raises(ConditionError, match="unknown column 'colour'"):
        pyfunc.predict(pd.DataFrame({"rows": [2], "conditions": ['{"colour": "red"}']}))


def test_condition_forms():
    assert normalize_conditions(None) is None and normalize_conditions("") is None
    assert normalize_conditions('{"a": {"low": 1, "high": 2}, "b": "x", "c": [3, 4]}') == {
        "a": (1, 2), "b": "x", "c": (3, 4)}
    with pytest.raises(ConditionError, match="exactly 'low' and 'high'"):
        normalize_conditions({"a": {"low": 1}})
    with pytest.raises(ConditionError, match="expected an object"):
        normalize_conditions("[1, 2]")


def test_where_is_parsed_by_column_kind(runs):
    _, _, outs = runs
    schema = TableSchema.load(outs["passed"] / "schema.json")
    parsed = parse_where(["species=Gentoo", "year=2008", "bill_depth_mm=15..18", "body_mass_g=4000"], schema)
    assert parsed == {"species": "Gentoo", "year": 2008, "bill_depth_mm": (15.0, 18.0), "body_mass_g": 4000.0}
    for bad, fragment in (("species", "expected column=value"), ("colour=red", "unknown column 'colour'"),
                          ("species=Dodo", "has no level 'Dodo'"), ("bill_depth_mm=deep", "not a number")):
        with pytest.raises(ConditionError, match=fragment):
            parse_where([bad], schema)


# -- synthgen sample ------------------------------------------------------------------------
def sample(*args, env=None):
    return CliRunner().invoke(cli, ["sample", *args], env={"MLFLOW_TRACKING_URI": None, **(env or {})})


def test_sample_from_a_local_dir_and_from_uris(runs, tmp_path):
    _, uri, outs = runs
    model_dir = str(outs["passed"] / "model")
    first = sample("--model", model_dir, "--rows", "20", "--where", "species=Adelie",
                   "--where", "bill_depth_mm=15..18", "--seed", "3", "--out", str(tmp_path / "a.csv"))
    assert first.exit_code == 0, first.output
    table = pd.read_csv(tmp_path / "a.csv")
    assert len(table) == 20 and (table["species"] == "Adelie").all() and table["bill_depth_mm"].between(15, 18).all()
    second = sample("--model", model_dir, "--rows", "20", "--where", "species=Adelie",
                    "--where", "bill_depth_mm=15..18", "--seed", "3", "--out", str(tmp_path / "a.parquet"))
    assert second.exit_code == 0, second.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), synthgen.load(model_dir).sample(
        20, conditions={"species": "Adelie", "bill_depth_mm": (15.0, 18.0)}, seed=3))
    run_id = json.loads((outs["passed"] / "manifest.json").read_text())["mlflow_run_id"]
    for ref in (f"models:/{NAME}@champion", f"models:/{NAME}/2", f"runs:/{run_id}/model"):
        out = tmp_path / f"{ref.split(':/')[0]}-{ref[-1]}.parquet"
        result = sample("--model", ref, "--rows", "9", "--where", "sex=male", "--out", str(out),
                        env={"MLFLOW_TRACKING_URI": uri})
        assert result.exit_code == 0, (ref, result.output)
        drawn = pd.read_parquet(out)
        assert len(drawn) == 9 and (drawn["sex"] == "male").all()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--model", "models:/no-such-model@champion"], "models:/no-such-model@champion: cannot fetch"),
        (["--model", "models:/penguins-gen@nobody"], "models:/penguins-gen@nobody: cannot fetch"),
        (["--model", "no/such/dir"], "no/such/dir: no such model directory"),
        (["--where", "colour=red"], "unknown column 'colour'"),
        (["--where", "species=Dodo"], "'species' has no level 'Dodo'"),
        (["--rows", "0"], "--rows must be a positive integer, got 0"),
        (["--rows", "-5"], "--rows must be a positive integer, got -5"),
        (["--out", "OUT.txt"], "unknown output format"),
        (["--out", "FILE/x.csv"], "cannot write into"),
    ],
)
def test_sample_bad_input_exits_2_with_one_line(runs, tmp_path, args, fragment):
    _, uri, outs = runs
    (tmp_path / "FILE").write_text("a file, not a directory")
    defaults = {"--model": str(outs["passed"] / "model"), "--rows": "5", "--out": str(tmp_path / "x.csv")}
    given = dict(zip(args[::2], args[1::2]))
    argv = []
    for key, value in {**defaults, **given}.items():
        argv += [key, value.replace("OUT", str(tmp_path / "out")).replace("FILE", str(tmp_path / "FILE"))]
    result = sample(*argv, env={"MLFLOW_TRACKING_URI": uri})
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("synthgen: error: ") and fragment in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE"]  # nothing written, not even half


def test_sample_uri_needs_a_tracking_store(tmp_path):
    result = sample("--model", f"models:/{NAME}@champion", "--rows", "5", "--out", str(tmp_path / "x.csv"))
    assert result.exit_code == 2
    assert "needs --tracking-uri or MLFLOW_TRACKING_URI" in result.stderr and not (tmp_path / "x.csv").exists()
    missing = f"sqlite:///{tmp_path / 'nowhere.db'}"
    result = sample("--model", f"models:/{NAME}@champion", "--rows", "5", "--out", str(tmp_path / "x.csv"),
                    "--tracking-uri", missing)
    assert result.exit_code == 2 and "no MLflow store there" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no store created, no file written


# -- load_dataset and the datasheet ---------------------------------------------------------
def test_load_dataset_of_a_published_run(runs):
    _, _, outs = runs
    published = outs["passed"] / "published"
    dataset = synthgen.load_dataset(published)
    assert dataset.passed and dataset.manifest["validation"]["passed"] is True
    pd.testing.assert_frame_equal(dataset.data, pd.read_parquet(outs["passed"] / "synthetic.parquet"))
    assert dataset.manifest["synthetic_hash"] == file_hash(published / "synthetic.parquet")
    assert dataset.datasheet.startswith("# Datasheet")
    for other in (outs["passed"], published / "manifest.json"):  # the run dir and the manifest work too
        assert synthgen.load_dataset(other).manifest == dataset.manifest


def test_load_dataset_refuses_a_rejected_run(runs):
    _, _, outs = runs
    assert not (outs["rejected"] / "published").exists()
    with pytest.raises(DataError, match=r"validation failed \(quality_score\); refusing"):
        synthgen.load_dataset(outs["rejected"])
    dataset = synthgen.load_dataset(outs["rejected"], allow_failed=True)
    assert not dataset.passed and len(dataset.data) == dataset.manifest["rows"]


def test_load_dataset_detects_changed_data_and_missing_manifest(runs, tmp_path):
    _, _, outs = runs
    copy = tmp_path / "copy"
    shutil.copytree(outs["passed"] / "published", copy)
    frame = pd.read_parquet(copy / "synthetic.parquet")
    frame.iloc[:-1].to_parquet(copy / "synthetic.parquet", index=False)  # one row quietly dropped
    with pytest.raises(DataError, match="does not match the manifest's synthetic_hash"):
        synthgen.load_dataset(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(DataError, match="no manifest.json; unvalidated data is refused"):
        synthgen.load_dataset(copy)
    assert synthgen.load_dataset(copy, allow_failed=True).manifest is None


def test_datasheet_carries_the_verdict_figures(runs):
    _, _, outs = runs
    sheet = (outs["passed"] / "published" / "DATASHEET.md").read_text()
    report = json.loads((outs["passed"] / "validation.json").read_text())
    manifest = json.loads((outs["passed"] / "manifest.json").read_text())
    assert "**Verdict: PASSED.**" in sheet and manifest["source_data_hash"] in sheet
    assert "family: `tabular_gan`" in sheet and "epochs: 2 configured, 2 run" in sheet
    assert "No differential privacy" in sheet and "species | categorical" in sheet
    assert f"models:/{NAME}/1" in sheet
    for name in ("quality_score", "detection_auc", "tstr_ratio", "exact_copy_rate", "dcr_overfitting_share", "mia_auc"):
        value = report["metrics"][name]
        assert f"| {name} | {value:.4g} |" in sheet, name
        assert manifest["validation"]["key_metrics"][name] == value
    rejected = (outs["rejected"] / "DATASHEET.md").read_text()
    assert "**Verdict: REJECTED (failed: quality_score).**" in rejected
    assert "| quality_score |" in rejected and "| False |" in rejected
