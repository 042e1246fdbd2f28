"""The image pipeline end to end: CLI, Prefect flows, augmentation, consuming the dataset.

One real (tiny) image pipeline run per module on an imbalanced 5-class slice of the
digits - ingest, train, generate, validate through the CLI - then the augment stage,
``synthgen.load_dataset`` and the datasheet against its real files and MLflow store;
the image and augment Prefect flows run once more on a copy.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

import synthgen
from synthgen.cli import cli
from synthgen.consume import SyntheticDataset
from synthgen.data.images import DIGITS, read_images
from synthgen.errors import DataError
from synthgen.io import data_digest, file_hash
from tests.conftest import write_params
from tests.tiny import TINY_IMAGE

MINORITY = "4"  # the rare class of the slice: 12 images before the split


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synthgen", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, mlflow_template):
    """Params file, output dir and MLflow URI of one finished image pipeline run."""
    root = tmp_path_factory.mktemp("image-augment")
    db = root / "mlflow.db"
    shutil.copy(mlflow_template, db)
    digits = read_images(DIGITS, 8)
    rng = np.random.default_rng(0)
    keep = np.concatenate([rng.choice(np.flatnonzero(digits.labels == c), 12 if c == 4 else 60, replace=False)
                           for c in range(5)])
    np.savez(root / "digits.npz", images=digits.images[keep][..., 0], labels=digits.labels[keep])
    params = {
        "data": {"path": str(root / "digits.npz"), "kind": "image", "image_size": 8, "holdout": 0.25},
        "model": {**TINY_IMAGE, "disc_augment": "ada", "ada_kimg": 1.0, "lr": 1e-3},
        "generate": {"rows": 60},
        "validate": {"min": {"real_accuracy": 0.0},  # ceilings merge with the image defaults: all set loose
                     "max": {"exact_copy_rate": 1.0, "image_detection_auc": 1.0, "memorization_share": 1.0}},
        "augment": {"mode": "rebalance", "ratio": 1.0, "seeds": 2, "seed": 7},
        "tracking": {"uri": f"sqlite:///{db}", "experiment": "images"},
        "output": {"dir": str(root / "out")},
    }
    path = write_params(root / "params.yaml", params)
    result = _cli("run", "--params", str(path))
    assert result.returncode == 0, result.stderr[-2000:]
    return {"params": path, "out": root / "out", "uri": params["tracking"]["uri"], "root": root, "raw": params}


def test_image_pipeline_end_to_end_via_cli(image_run):
    out, uri = image_run["out"], image_run["uri"]
    schema = json.loads((out / "schema.json").read_text())
    assert schema["kind"] == "image" and schema["image_size"] == 8 and schema["classes"] == ["0", "1", "2", "3", "4"]
    assert schema["counts"]["train"][MINORITY] < schema["counts"]["train"]["0"]
    with open(out / "synthetic" / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 60 and all((out / "synthetic" / r["file"]).is_file() for r in rows)
    report = json.loads((out / "validation.json").read_text())
    assert report["passed"] and 0 <= report["metrics"]["generated_class_accuracy"] <= 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"] == 60 and manifest["validation"]["passed"]
    assert manifest["source_data_hash"] == data_digest(image_run["root"] / "digits.npz")
    assert manifest["source_data_hash"] in (out / "DATASHEET.md").read_text()
    for name in ("synthetic/labels.csv", "manifest.json", "report.html", "DATASHEET.md"):
        assert (out / "published" / name).is_file()
    assert "data:image/png;base64" in (out / "report.html").read_text()
    full = (out / "report.html").read_text()  # the data owner's full report: real holdout grid, nearest pairs
    assert "Real holdout images" in full and 'alt="nearest train neighbours"' in full
    assert set(report["details"]) >= {"metric_failures", "image_detection_auc_per_class", "baseline", "noise_sd"}
    assert "image_detection_auc" in report["metrics"] and "fid_random" in report["metrics"]
    public = (out / "published" / "report.html").read_text()  # published: the public report, no real image
    assert public == (out / "report_public.html").read_text() and 'alt="sample grid"' in public
    assert "Real holdout images" not in public and 'alt="real holdout grid"' not in public
    assert 'alt="nearest train neighbours"' not in public
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(manifest["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["synthgen.verdict"] == "passed"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "ada_p")] == [0, 1]  # per epoch
    total_steps = 2 * (schema["n_train"] // 32)  # 2 epochs of full batches of 32
    interval = [m.step for m in client.get_metric_history(run.info.run_id, "ada_p_interval")]
    trace = pd.read_csv(out / "ada.csv")
    assert interval == trace["step"].tolist() == list(range(4, total_steps + 1, 4))  # every ada_interval steps
    assert ((trace["ada_p"] >= 0) & (trace["ada_p"] <= 1)).all() and trace["ada_rt"].between(-1, 1).all()
    assert "generated_class_accuracy" in run.data.metrics
    assert "samples/epoch-00002.png" in {a.path for a in client.list_artifacts(run.info.run_id, "samples")}
    assert "DATASHEET.md" in {a.path for a in client.list_artifacts(run.info.run_id)}
    # a bad image folder is one line on stderr and exit 2
    bad = write_params(image_run["root"] / "bad.yaml",
                       {**image_run["raw"], "data": {**image_run["raw"]["data"], "path": str(image_run["root"] / "nope")}})
    failed = _cli("ingest", "--params", str(bad))
    assert failed.returncode == 2 and "nope: not found" in failed.stderr and "Traceback" not in failed.stderr


def test_augment_rebalances_images_into_a_separate_folder_and_measures_the_benefit(image_run):
    out = image_run["out"]
    holdout_before = data_digest(out / "data" / "holdout.npz")
    result = _cli("augment", "--params", str(image_run["params"]))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "synthetic images added" in result.stdout
    assert "the generator's own synthetic data: PASSED its trust gate" in result.stdout

    manifest = json.loads((out / "augment" / "manifest.json").read_text())
    schema = json.loads((out / "schema.json").read_text())
    train_counts = schema["counts"]["train"]
    majority = max(train_counts.values())
    assert manifest["kind"] == "image" and manifest["unit"] == "images"
    for name, row in manifest["classes"].items():  # every class lifted exactly to the majority count
        assert row["before"] == train_counts[name] and row["after"] == majority
        assert row["added"] == majority - train_counts[name]
    assert manifest["classes"][MINORITY]["added"] > 0

    # separate folders plus one index with a source column; the holdout untouched
    images = out / "augment" / "images"
    with open(images / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == manifest["rows"]["total"] == sum(train_counts.values()) + manifest["rows"]["synthetic"]
    for source in ("real", "synthetic"):
        listed = [r for r in rows if r["source"] == source]
        assert all(r["file"].startswith(f"{source}/") and (images / r["file"]).is_file() for r in listed)
        assert len(list((images / source).rglob("*.png"))) == len(listed)
    synthetic_per_class = {name: sum(r["class"] == name for r in rows if r["source"] == "synthetic")
                           for name in train_counts}
    assert synthetic_per_class == {name: row["added"] for name, row in manifest["classes"].items()}
    assert data_digest(out / "data" / "holdout.npz") == holdout_before == manifest["holdout_hash"]
    assert manifest["augmented_hash"] == data_digest(images)

    benefit = json.loads((out / "augment" / "benefit.json").read_text())
    assert benefit["measured"] and benefit["minority"] == MINORITY
    assert {(r["seed"], r["arm"]) for r in benefit["records"]} == {(s, a) for s in (0, 1)
                                                                   for a in ("real", "augmented", "reweighted")}
    assert all(0 <= r["balanced_accuracy"] <= 1 for r in benefit["records"])
    lift = benefit["models"]["small_cnn"]["balanced_accuracy"]["lift"]
    assert lift["n"] == 2 and lift["sd"] is not None
    assert manifest["benefit"]["balanced_accuracy"] == benefit["overall"]["balanced_accuracy"]["lift"]
    report = (out / "augment" / "report.html").read_text()
    assert "synthetic images added" in report.lower()
    assert report.count("data:image/png;base64") >= 3  # class counts, synthetic grid, scores

    # the augmented set loads with its provenance; the generator's passing verdict is on record
    ds = synthgen.load_dataset(out / "augment")
    assert ds.augmented and ds.passed and manifest["generator_validation"]["passed"]
    assert ds.images.shape == (manifest["rows"]["total"], 8, 8, 1)
    assert list(ds.provenance) == [r["source"] for r in rows] and list(ds.labels) == [r["class"] for r in rows]
    assert ds.data.classes == schema["classes"]
    assert "It contains the real train split" in ds.datasheet and "PASSED its trust gate" in ds.datasheet
    assert f"| {MINORITY} | {train_counts[MINORITY]} | {manifest['classes'][MINORITY]['added']} | {majority} |" in ds.datasheet

    run = MlflowClient(tracking_uri=image_run["uri"]).get_run(manifest["mlflow_run_id"])
    assert run.data.metrics["augment_synthetic_rows"] == manifest["rows"]["synthetic"]
    assert "augment_lift_balanced_accuracy_mean" in run.data.metrics


def test_augment_images_names_a_bad_minority_class(image_run):
    result = _cli("augment", "--params", str(image_run["params"]), "--set", "augment.minority=cat",
                  "--set", "augment.benefit=false")
    assert result.returncode == 2
    assert "augment.minority" in result.stderr and "'cat'" in result.stderr
    assert "Traceback" not in result.stderr


def test_load_dataset_returns_published_images_with_manifest_and_datasheet(image_run, tmp_path):
    published = image_run["out"] / "published"
    ds = synthgen.load_dataset(published)
    assert ds.passed and ds.manifest["kind"] == "image"
    assert ds.images.shape == (60, 8, 8, 1) and ds.images.dtype == np.uint8
    counts = ds.manifest["counts"]
    assert {name: int((ds.labels == name).sum()) for name in counts} == counts
    assert ds.datasheet.startswith("# Datasheet: synthetic images")
    for needle in ("Verdict: PASSED", "generated_class_accuracy", "## Intended use", "## Known limits",
                   "| 4 |"):
        assert needle in ds.datasheet

    # bytes changed after validation: refused
    tampered = tmp_path / "tampered"
    shutil.copytree(published, tampered)
    first = next((tampered / "synthetic").rglob("*.png"))
    first.write_bytes(first.read_bytes() + b"\0")
    with pytest.raises(DataError, match="does not match"):
        synthgen.load_dataset(tampered)

    # a failed verdict: refused unless asked
    failed = tmp_path / "failed"
    shutil.copytree(published, failed)
    manifest = json.loads((failed / "manifest.json").read_text())
    manifest["validation"].update(passed=False, failed_checks=["generated_class_accuracy"])
    (failed / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="validation failed"):
        synthgen.load_dataset(failed)
    assert synthgen.load_dataset(failed, allow_failed=True).images.shape == (60, 8, 8, 1)

    with pytest.raises(TypeError, match="tabular"):
        SyntheticDataset(pd.DataFrame({"a": [1]}), {}, None, tmp_path).images


@pytest.mark.slow  # 30-60 s; run by `make test-team` (the Prefect tier) to keep `make test` under 10 min
def test_prefect_image_flow_and_augment_flow(image_run, tmp_path, monkeypatch):
    from prefect.testing.utilities import prefect_test_harness

    from pipelines.augment_flow import augment_pipeline
    from pipelines.image_flow import image_pipeline

    out = tmp_path / "out"
    overrides = [f"output.dir={out}", "model.epochs=1"]
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    with prefect_test_harness(server_startup_timeout=180):
        images = image_pipeline(str(image_run["params"]), overrides, return_state=True)
        augmented = augment_pipeline(str(image_run["params"]), [*overrides, "augment.mode=enlarge",
                                                                "augment.factor=1.5", "augment.benefit=false"],
                                     skip_train=True, return_state=True)
    assert images.is_completed() and augmented.is_completed()
    assert images.result()["passed"] and (out / "published" / "DATASHEET.md").is_file()
    manifest = augmented.result()
    real = manifest["rows"]["real"]
    assert manifest["kind"] == "image"
    assert manifest["rows"]["synthetic"] == int(np.floor(0.5 * real + 0.5))  # (factor - 1) x real, half up
    assert manifest["benefit"] == {"file": "benefit.json", "minority": MINORITY}
    listed = (out / "augment" / "images" / "labels.csv").read_text().splitlines()
    assert len(listed) == 1 + real + manifest["rows"]["synthetic"]


def test_sample_cli_writes_an_image_folder_and_names_bad_input(image_run, tmp_path):
    model = str(image_run["out"] / "model")
    out = tmp_path / "threes"
    result = _cli("sample", "--model", model, "--rows", "7", "--where", "label=3", "--seed", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "7 images" in result.stdout
    with open(out / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["class"] for r in rows] == ["3"] * 7 and all((out / r["file"]).is_file() for r in rows)
    again = tmp_path / "again"
    assert _cli("sample", "--model", model, "--rows", "7", "--where", "label=3", "--seed", "1",
                "--out", str(again)).returncode == 0
    assert file_hash(again) == file_hash(out)  # same seed, same images

    cases = {
        ("--where", "label=cat"): "label 'cat' is not a training class",
        ("--where", "colour=red"): "an image generator takes one label=CLASS",
        ("--rows", "0"): "--rows must be a positive integer",
    }
    cases[("--out", str(tmp_path / "x.csv"))] = "writes a folder of PNGs"
    runner = CliRunner()  # the same command in-process: no interpreter start per case
    for extra, message in cases.items():
        args = ["sample", "--model", model, "--rows", "5", "--out", str(tmp_path / "bad"), *extra]
        result = runner.invoke(cli, args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.stderr, result.exception)
        assert not (tmp_path / "bad").exists() and not (tmp_path / "x.csv").exists()
