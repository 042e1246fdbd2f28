"""Consuming synthgen's output: the registered pyfunc generator, `synthgen sample`,
`synthgen.load`, `synthgen.load_dataset` and the datasheet, on two real tiny pipeline runs
(one passing, one rejected) that share one real MLflow SQLite store and registered model.
Generators are registered by the validate stage, with their verdict, and served only when
it passed (unless unvalidated ones are allowed); `synthgen sample` replaces no folder it
did not write."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts

import synthgen
from synthgen.cli import cli
from synthgen.config import parse_params
from synthgen.consume import normalize_conditions, parse_where, requests_from_frame
from synthgen.data.schema import TableSchema
from synthgen.errors import ConditionError, DataError, ModelError
from synthgen.io import file_hash
from synthgen import stages
from tests.conftest import tiny_params
from tests.tiny import TINY_GAN

NAME = "penguins-gen"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mlflow_template):
    """Run 1 passes (version 1: candidate, then champion); run 2 is rejected (version 2:
    candidate only). Stage by stage, to see the registry between train and validate."""
    import torch

    torch.set_num_threads(2)
    tmp = tmp_path_factory.mktemp("consume")
    shutil.copy(mlflow_template, tmp / "mlflow.db")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    outs, after_train = {}, {}
    for label, floor in (("passed", 0.1), ("rejected", 0.999)):
        raw = tiny_params(tmp, uri, model=TINY_GAN, tracking={"registered_model": NAME},
                          validate={"min": {"quality_score": floor, "gx_success_rate": 0.0}},
                          output={"dir": str(tmp / label)})
        params = parse_params(raw)
        stages.ingest(params)
        stages.train(params)
        versions = client.search_model_versions(f"name='{NAME}'") if client.search_registered_models() else []
        after_train[label] = (len(versions), json.loads((tmp / label / "tracking.json").read_text()))
        stages.generate(params)
        report = stages.validate(params)
        assert report["passed"] is (label == "passed")
        outs[label] = tmp / label
    return tmp, uri, outs, after_train


# -- the registered pyfunc generator ---------------------------------------------------
def test_generators_are_registered_at_validate_with_their_verdict(runs, tmp_path):
    _, uri, outs, after_train = runs
    # train registers nothing: run 1 left no version, run 2 only run 1's; tracking.json holds the run id only
    assert after_train["passed"][0] == 0 and after_train["rejected"][0] == 1
    assert all(set(recorded) == {"uri", "run_id"} for _, recorded in after_train.values())
    client = MlflowClient(tracking_uri=uri)
    champion = client.get_model_version_by_alias(NAME, "champion")
    candidate = client.get_model_version_by_alias(NAME, "candidate")
    assert str(champion.version) == "1" and str(candidate.version) == "2"  # the rejected run never became champion
    for label, version in (("passed", "1"), ("rejected", "2")):
        manifest = json.loads((outs[label] / "manifest.json").read_text())
        generator = manifest["generator"]  # tracking.json stays the train stage's (a DVC out of train)
        assert set(json.loads((outs[label] / "tracking.json").read_text())) == {"uri", "run_id"}
        assert generator["version"] == version
        assert generator["verdict"] == label and generator["alias"] == "candidate"
        mv = client.get_model_version(NAME, version)
        assert mv.tags["synthgen.model_id"] == generator["model_id"] and mv.run_id == manifest["mlflow_run_id"]
        assert mv.tags["synthgen.verdict"] == label
        assert mv.tags["synthgen.failed_checks"] == ("" if label == "passed" else "quality_score")
        assert client.get_run(mv.run_id).data.tags["synthgen.verdict"] == label
        # the verdict travels inside the logged model, tied to the model's bytes
        local = Path(download_artifacts(artifact_uri=client.get_model_version_download_uri(NAME, version),
                                        dst_path=str(tmp_path / label), tracking_uri=uri))
        verdict = json.loads(next(local.rglob("verdict.json")).read_text())
        assert verdict["passed"] is (label == "passed") and verdict["model_hash"] == manifest["model_hash"]
        assert verdict["model_id"] == generator["model_id"] and verdict["mlflow_run_id"] == manifest["mlflow_run_id"]
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
    tmp, uri, outs, _ = runs
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


def test_pyfunc_rejects_bad_requests_and_unvalidated_generators(runs, monkeypatch):
    tmp, uri, _, _ = runs
    import mlflow

    from synthgen.tracking.pyfunc import fetch_synthesizer

    model = fetch_synthesizer(f"models:/{NAME}/1", uri)
    assert model.sample(3, seed=0).shape[0] == 3
    with pytest.raises(ModelError, match=rf"models:/{NAME}/2: its synthetic data failed the trust gate \(quality_score\)"):
        fetch_synthesizer(f"models:/{NAME}/2", uri)
    assert fetch_synthesizer(f"models:/{NAME}/2", uri, allow_unvalidated=True).sample(2, seed=0).shape[0] == 2
    with pytest.raises(ConditionError, match="'rows' column"):
        requests_from_frame(pd.DataFrame({"n": [3]}))
    with pytest.raises(ConditionError, match="rows must be a positive integer"):
        requests_from_frame(pd.DataFrame({"rows": [0]}))
    with pytest.raises(ConditionError, match="not valid JSON"):
        requests_from_frame(pd.DataFrame({"rows": [2], "conditions": ["{species: Adelie"]}))
    with pytest.raises(ConditionError, match="allow_unvalidated must be true or false, got 'maybe'"):
        requests_from_frame(pd.DataFrame({"rows": [2], "allow_unvalidated": ["maybe"]}))
    flags = requests_from_frame(pd.DataFrame({"rows": [1, 1, 1], "allow_unvalidated": [True, "no", None]}))
    assert [r.allow_unvalidated for r in flags] == [True, False, False]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}@candidate")  # the rejected version 2
    with pytest.raises(ModelError, match=r"failed the trust gate \(quality_score\); add allow_unvalidated=True"):
        pyfunc.predict(pd.DataFrame({"rows": [2]}))
    with pytest.raises(ConditionError, match="unknown column 'colour'"):  # allowed: on to the request itself
        pyfunc.predict(pd.DataFrame({"rows": [2], "conditions": ['{"colour": "red"}'], "allow_unvalidated": [True]}))


def test_condition_forms():
    assert normalize_conditions(None) is None and normalize_conditions("") is None
    assert normalize_conditions('{"a": {"low": 1, "high": 2}, "b": "x", "c": [3, 4]}') == {
        "a": (1, 2), "b": "x", "c": (3, 4)}
    with pytest.raises(ConditionError, match="exactly 'low' and 'high'"):
        normalize_conditions({"a": {"low": 1}})
    with pytest.raises(ConditionError, match="expected an object"):
        normalize_conditions("[1, 2]")


def test_where_is_parsed_by_column_kind(runs):
    _, _, outs, _ = runs
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
    _, uri, outs, _ = runs
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
    run_ids = {label: json.loads((outs[label] / "manifest.json").read_text())["mlflow_run_id"] for label in outs}
    passing = (f"models:/{NAME}@champion", f"models:/{NAME}/1", f"runs:/{run_ids['passed']}/model")
    failing = (str(outs["rejected"] / "model"), f"models:/{NAME}@candidate", f"runs:/{run_ids['rejected']}/model")
    for i, ref in enumerate(passing + failing):
        out = tmp_path / f"{i}.parquet"
        refused = sample("--model", ref, "--rows", "9", "--where", "sex=male", "--out", str(out),
                         env={"MLFLOW_TRACKING_URI": uri})
        if ref in failing:  # refused by default, sampled when unvalidated generators are allowed
            assert refused.exit_code == 2 and not out.exists(), (ref, refused.output)
            assert f"{ref}: its synthetic data failed the trust gate (quality_score)" in refused.stderr
            result = sample("--model", ref, "--rows", "9", "--where", "sex=male", "--out", str(out),
                            "--allow-unvalidated", env={"MLFLOW_TRACKING_URI": uri})
        else:
            result = refused
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
        (["--model", "REJECTED"], "failed the trust gate (quality_score); pass --allow-unvalidated to sample anyway"),
        (["--model", f"models:/{NAME}/2"], f"models:/{NAME}/2: its synthetic data failed the trust gate"),
        (["--out", "FILE"], "exists and is not a directory synthgen wrote"),
    ],
)
def test_sample_bad_input_exits_2_with_one_line(runs, tmp_path, args, fragment):
    _, uri, outs, _ = runs
    (tmp_path / "FILE").write_text("a file, not a directory")
    defaults = {"--model": str(outs["passed"] / "model"), "--rows": "5", "--out": str(tmp_path / "x.csv")}
    given = dict(zip(args[::2], args[1::2]))
    argv = []
    for key, value in {**defaults, **given}.items():
        argv += [key, value.replace("OUT", str(tmp_path / "out")).replace("FILE", str(tmp_path / "FILE"))
                 .replace("REJECTED", str(outs["rejected"] / "model"))]
    result = sample(*argv, env={"MLFLOW_TRACKING_URI": uri})
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("synthgen: error: ") and fragment in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE"]  # nothing written, not even half
    assert (tmp_path / "FILE").read_text() == "a file, not a directory"


def test_synthgen_load_serves_only_validated_models(runs, tmp_path):
    from synthgen.synthesizers import load as load_ungated

    _, _, outs, _ = runs
    assert synthgen.load(outs["passed"] / "model").sample(3, seed=0).shape[0] == 3
    with pytest.raises(ModelError, match=r"failed the trust gate \(quality_score\); pass allow_unvalidated=True"):
        synthgen.load(outs["rejected"] / "model")
    assert synthgen.load(outs["rejected"] / "model", allow_unvalidated=True).sample(2, seed=0).shape[0] == 2
    assert load_ungated(outs["rejected"] / "model").name == "tabular_gan"  # the stages' own loader: no gate
    shutil.copytree(outs["passed"] / "model", tmp_path / "model")  # no manifest beside the copy
    with pytest.raises(ModelError, match=r"no verdict on record for this model \(never validated: no manifest"):
        synthgen.load(tmp_path / "model")
    shutil.copy(outs["passed"] / "manifest.json", tmp_path / "manifest.json")
    assert synthgen.load(tmp_path / "model").name == "tabular_gan"  # the manifest matches the copy's bytes
    (tmp_path / "model" / "params.json").write_text("{}")  # the model changed after validation
    with pytest.raises(ModelError, match="records another model"):
        synthgen.load(tmp_path / "model")


def test_sample_replaces_only_regular_files_and_its_own_folders(runs, tmp_path):
    _, _, outs, _ = runs
    model = str(outs["passed"] / "model")
    (tmp_path / "old.csv").write_text("old\n")
    assert sample("--model", model, "--rows", "4", "--out", str(tmp_path / "old.csv")).exit_code == 0
    assert len(pd.read_csv(tmp_path / "old.csv")) == 4  # a regular file is replaced
    (tmp_path / "target.csv").write_text("keep me\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "target.csv")
    (tmp_path / "dir.csv").mkdir()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "labels.csv").write_text("file,label,class\n")
    for out, fragment in (("link.csv", "is not a regular file"), ("dir.csv", "is a directory"),
                          ("foreign", "synthgen did not write it (no .synthgen-output marker)")):
        result = sample("--model", model, "--rows", "4", "--out", str(tmp_path / out))
        assert result.exit_code == 2 and fragment in result.stderr, (out, result.output)
    assert (tmp_path / "target.csv").read_text() == "keep me\n" and (tmp_path / "link.csv").is_symlink()
    assert list((tmp_path / "dir.csv").iterdir()) == [] and [p.name for p in foreign.iterdir()] == ["labels.csv"]


def test_image_folders_carry_a_marker_and_foreign_folders_are_kept(tmp_path):
    import numpy as np

    from synthgen.config import ImageModelConfig
    from synthgen.consume import OUTPUT_MARKER, sample_images_to_folder
    from synthgen.data.images import DIGITS, read_images
    from synthgen.synthesizers.image_cgan import ImageCGANSynthesizer
    from tests.tiny import TINY_IMAGE

    digits = read_images(DIGITS, 8)
    model = ImageCGANSynthesizer(ImageModelConfig(**{**TINY_IMAGE, "epochs": 1})).fit(digits.subset(np.arange(100)))
    out = tmp_path / "threes"
    first = sample_images_to_folder(model, 4, out, ["label=3"], seed=0)
    assert (out / OUTPUT_MARKER).is_file() and (out / "labels.csv").is_file() and len(first) == 4
    again = sample_images_to_folder(model, 2, out, seed=1)  # its own folder: replaced, marker kept
    assert len(again) == 2 and (out / OUTPUT_MARKER).is_file() and len((out / "labels.csv").read_text().splitlines()) == 3
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "labels.csv").write_text("file,label,class\nholiday.png,0,beach\n")
    with pytest.raises(DataError, match=r"photos: exists and synthgen did not write it"):
        sample_images_to_folder(model, 2, foreign, seed=0)
    assert sorted(p.name for p in foreign.iterdir()) == ["labels.csv"]
    assert "holiday.png" in (foreign / "labels.csv").read_text()


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
    _, _, outs, _ = runs
    published = outs["passed"] / "published"
    dataset = synthgen.load_dataset(published)
    assert dataset.passed and dataset.manifest["validation"]["passed"] is True
    pd.testing.assert_frame_equal(dataset.data, pd.read_parquet(outs["passed"] / "synthetic.parquet"))
    assert dataset.manifest["synthetic_hash"] == file_hash(published / "synthetic.parquet")[:36]
    assert dataset.datasheet.startswith("# Datasheet")
    for other in (outs["passed"], published / "manifest.json"):  # the run dir and the manifest work too
        assert synthgen.load_dataset(other).manifest == dataset.manifest


def test_load_dataset_refuses_a_rejected_run(runs):
    _, _, outs, _ = runs
    assert not (outs["rejected"] / "published").exists()
    with pytest.raises(DataError, match=r"validation failed \(quality_score\); refusing"):
        synthgen.load_dataset(outs["rejected"])
    dataset = synthgen.load_dataset(outs["rejected"], allow_failed=True)
    assert not dataset.passed and len(dataset.data) == dataset.manifest["rows"]


def test_load_dataset_detects_changed_data_and_missing_manifest(runs, tmp_path):
    _, _, outs, _ = runs
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


def test_load_dataset_reads_whole_sha256_manifests_and_refuses_short_ones(runs, tmp_path):
    """Manifests written before digests were cut to MLflow's 36 characters hold the whole
    sha256: they still verify. A recorded hash shorter than a digest verifies nothing."""
    _, _, outs, _ = runs
    copy = tmp_path / "copy"
    shutil.copytree(outs["passed"] / "published", copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    whole = file_hash(copy / "synthetic.parquet")
    assert len(manifest["synthetic_hash"]) == 36 and whole.startswith(manifest["synthetic_hash"])
    for recorded, loads in ((whole, True), (whole[:12], False), ("", False)):
        (copy / "manifest.json").write_text(json.dumps({**manifest, "synthetic_hash": recorded}))
        if loads:
            assert len(synthgen.load_dataset(copy).data) == manifest["rows"]
        else:
            with pytest.raises(DataError, match="does not match the manifest's synthetic_hash"):
                synthgen.load_dataset(copy)


def test_datasheet_carries_the_verdict_figures(runs):
    _, _, outs, _ = runs
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
