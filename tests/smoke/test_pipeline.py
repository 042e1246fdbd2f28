"""End to end through the CLI, with a real MLflow SQLite store and real GX validation."""

import json
import subprocess
import sys

import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import tiny_params, write_params

CONTRACT = ["schema.json", "model/synthesizer.json", "synthetic.parquet", "manifest.json", "validation.json"]


def synthgen(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "synthgen", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, mlflow_template):
    import shutil

    tmp = tmp_path_factory.mktemp("run")
    shutil.copy(mlflow_template, tmp / "mlflow.db")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    params = write_params(tmp / "params.yaml", tiny_params(tmp, uri))
    result = synthgen("run", "--params", str(params))
    return tmp, uri, result


def test_run_writes_the_contract(finished_run):
    tmp, _, result = finished_run
    assert result.returncode == 0, result.stderr
    out = tmp / "out"
    for name in CONTRACT:
        assert (out / name).exists(), name
    report = json.loads((out / "validation.json").read_text())
    assert set(report) >= {"passed", "metrics", "checks"}
    assert 0 <= report["metrics"]["quality_score"] <= 1
    for check in report["checks"]:
        assert set(check) >= {"name", "value", "threshold", "passed"}
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("rows", "schema", "model", "seed", "params_hash", "source_data_hash", "mlflow_run_id",
                "train_seconds", "validation"):
        assert manifest[key] is not None, key
    assert manifest["rows"] == 150 and manifest["validation"]["passed"] is True
    synthetic = pd.read_parquet(out / "synthetic.parquet")
    real = pd.read_parquet(out / "data" / "train.parquet")
    assert list(synthetic.columns) == list(real.columns) and (synthetic.dtypes == real.dtypes).all()
    assert not list(out.glob(".*")), "temporary files left behind"


def test_run_is_tracked_in_mlflow(finished_run):
    tmp, uri, _ = finished_run
    manifest = json.loads((tmp / "out" / "manifest.json").read_text())
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(manifest["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["model.name"] == "ctgan" and run.data.params["model.epochs"] == "2"
    assert run.data.metrics["quality_score"] > 0 and "train_seconds" in run.data.metrics
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss_d")] == [0, 1]
    assert run.data.tags["synthgen.verdict"] == "passed"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"schema.json", "model", "synthetic", "validation.json", "manifest.json", "gx_result.json",
            "plots", "report.html"} <= artifacts


def test_report_shows_plots_and_verdict(finished_run):
    tmp, _, _ = finished_run
    page = (tmp / "out" / "report.html").read_text()
    assert "Verdict: PASSED" in page and "quality_score" in page
    assert page.count('src="data:image/png;base64,') >= 8 + 2  # 8 columns, losses, pair heatmap
    for alt in ('alt="loss curves"', 'alt="pair-trend heatmap"', 'alt="column bill_length_mm"'):
        assert alt in page


def test_passing_run_is_published(finished_run):
    tmp, _, _ = finished_run
    published = tmp / "out" / "published"
    assert sorted(p.name for p in published.iterdir()) == [
        "DATASHEET.md", "manifest.json", "report.html", "synthetic.parquet"]
    public = (published / "report.html").read_text()  # the public report: no real-vs-synthetic figure
    assert public == (tmp / "out" / "report_public.html").read_text() and "Verdict: PASSED" in public
    assert 'alt="synthetic column bill_length_mm"' in public and 'alt="column ' not in public
    assert 'alt="pair-trend heatmap"' not in public

def test_failing_thresholds_exit_1(finished_run):
    tmp, _, _ = finished_run
    params = tiny_params(tmp, None, validate={"min": {"quality_score": 0.999}})
    path = write_params(tmp / "strict.yaml", params)
    result = synthgen("validate", "--params", str(path))
    assert result.returncode == 1
    assert "check failed: quality_score" in result.stderr
    report = json.loads((tmp / "out" / "validation.json").read_text())
    assert report["passed"] is False


def test_audit_of_external_table(finished_run):
    tmp, _, _ = finished_run
    real = pd.read_parquet(tmp / "out" / "data" / "holdout.parquet")
    real.to_csv(tmp / "other.csv", index=False)
    path = write_params(tmp / "audit.yaml", tiny_params(tmp, None))
    result = synthgen("validate", "--params", str(path), "--synthetic", str(tmp / "other.csv"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp / "other.validation.json").read_text())
    assert report["metrics"]["quality_score"] > 0.7


def test_audit_on_a_fresh_output_dir_ingests_first_and_keeps_default_ceilings(tmp_path):
    """`synthgen validate --synthetic` with nothing ingested yet ingests data.path itself; a
    partial validate.max changes one ceiling and keeps the other (privacy) ceilings."""
    from tests.conftest import PENGUINS

    pd.read_csv(PENGUINS).sample(120, random_state=0).to_csv(tmp_path / "theirs.csv", index=False)
    path = write_params(tmp_path / "audit.yaml", tiny_params(tmp_path, None))
    result = synthgen("validate", "--params", str(path), "--synthetic", str(tmp_path / "theirs.csv"),
                      "--set", "validate.max.mia_auc=0.99")
    assert result.returncode in (0, 1), result.stderr[-2000:]
    assert "no ingested real data yet; running the ingest stage" in result.stderr
    assert (tmp_path / "out" / "schema.json").is_file() and (tmp_path / "out" / "data" / "train.parquet").is_file()
    checks = {c["name"]: c for c in json.loads((tmp_path / "theirs.validation.json").read_text())["checks"]}
    assert checks["mia_auc"]["threshold"] == 0.99
    assert checks["exact_copy_rate"]["threshold"] == 0.05 and checks["dcr_overfitting_share"]["threshold"] == 0.6
    assert checks["exact_copy_rate"]["passed"] is False  # real rows offered as synthetic: caught, not dropped


@pytest.mark.parametrize(
    ("sections", "fragment"),
    [
        ({"data": {"path": "missing.csv"}}, "missing.csv: file not found"),
        ({"data": {"target": "wingspan"}}, "data.target: column 'wingspan'"),
        ({"model": {"epochz": 3}}, "model.epochz: unknown key"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, sections, fragment):
    params = write_params(tmp_path / "p.yaml", tiny_params(tmp_path, None, **sections))
    result = synthgen("run", "--params", str(params))
    assert result.returncode == 2
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_unknown_set_key_exits_2(tmp_path):
    params = write_params(tmp_path / "p.yaml", tiny_params(tmp_path, None))
    result = synthgen("run", "--params", str(params), "--set", "model.epohcs=3")
    assert result.returncode == 2 and "model.epohcs: unknown key" in result.stderr


def test_unreachable_tracking_server_fails_before_training(tmp_path):
    params = tiny_params(tmp_path, "http://127.0.0.1:9")
    path = write_params(tmp_path / "p.yaml", params)
    assert synthgen("ingest", "--params", str(path)).returncode == 0
    result = synthgen("train", "--params", str(path))
    assert result.returncode == 2 and "cannot reach the MLflow store" in result.stderr
    assert not (tmp_path / "out" / "model").exists()


def test_only_passing_data_is_published(tmp_path, mlflow_uri):
    strict = tiny_params(tmp_path, mlflow_uri, validate={"min": {"quality_score": 0.999}})
    result = synthgen("run", "--params", str(write_params(tmp_path / "p.yaml", strict)))
    assert result.returncode == 1
    out = tmp_path / "out"
    assert (out / "synthetic.parquet").exists() and not (out / "published").exists()
    assert "Verdict: REJECTED" in (out / "report.html").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["validation"]["passed"] is False and manifest["validation"]["failed_checks"] == ["quality_score"]
    run = MlflowClient(tracking_uri=mlflow_uri).get_run(manifest["mlflow_run_id"])
    assert run.data.tags["synthgen.verdict"] == "rejected"


def test_copy_of_training_data_fails_on_privacy(finished_run):
    tmp, _, _ = finished_run
    real = pd.read_parquet(tmp / "out" / "data" / "train.parquet")
    real.to_parquet(tmp / "copy.parquet")
    params = tiny_params(tmp, None)
    params["validate"]["max"] = {"exact_copy_rate": 0.05, "dcr_overfitting_share": 0.6, "mia_auc": 0.75}
    path = write_params(tmp / "audit-copy.yaml", params)
    result = synthgen("validate", "--params", str(path), "--synthetic", str(tmp / "copy.parquet"))
    assert result.returncode == 1
    report = json.loads((tmp / "copy.validation.json").read_text())
    failed = {c["name"] for c in report["checks"] if not c["passed"]}
    assert failed == {"exact_copy_rate", "dcr_overfitting_share", "mia_auc"}
    assert report["metrics"]["exact_copy_rate"] == 1.0 and report["metrics"]["mia_auc"] > 0.95
