"""MLflow lineage of a pipeline run (issue 19), read back through MLflow's client: the run's
datasets carry the manifest's hashes, and ``registered_model: auto`` names the generator
after the data, not the demo."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from mlflow import MlflowClient

from synthgen.stages.lineage import data_name
from tests.conftest import PENGUINS, tiny_params, write_params


def test_a_run_logs_its_datasets_with_the_manifest_hashes_and_registers_under_the_data_name(tmp_path, mlflow_uri):
    data = tmp_path / "Loan Applications 2026.csv"
    shutil.copy(PENGUINS, data)  # a table that is not called penguins
    params = write_params(tmp_path / "params.yaml", tiny_params(
        tmp_path, mlflow_uri, data={"path": str(data)}, tracking={"registered_model": "auto"}))
    result = subprocess.run([sys.executable, "-m", "synthgen", "run", "--params", str(params)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["generator"]["registered_model"] == "loan-applications-2026" == data_name(data)

    run = MlflowClient(tracking_uri=mlflow_uri).get_run(manifest["mlflow_run_id"])
    logged = {}
    for item in run.inputs.dataset_inputs:
        context = {t.key: t.value for t in item.tags}["mlflow.data.context"]
        logged[context] = item.dataset
    assert set(logged) == {"source", "training", "evaluation", "output"}
    expected = {"source": manifest["source_data_hash"], "training": manifest["splits"]["train"]["sha256"],
                "evaluation": manifest["splits"]["holdout"]["sha256"], "output": manifest["synthetic_hash"]}
    for context, digest in expected.items():
        dataset = logged[context]
        assert dataset.digest == digest and len(digest) == 36  # the manifest's digest, as MLflow holds it
        assert json.loads(dataset.source)["uri"]
        profile = json.loads(dataset.profile)
        assert set(profile) == {"num_rows"} and profile["num_rows"] > 0  # no values of the real data
        schema = json.loads(dataset.schema)
        assert {c["name"] for c in schema["columns"]} >= {"species", "island"}
        assert all(set(c) == {"name", "kind"} for c in schema["columns"])
    assert json.loads(logged["output"].profile)["num_rows"] == manifest["rows"]
    assert logged["source"].name == "loan-applications-2026"
