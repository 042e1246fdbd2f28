"""A real Prefect flow run on a temporary local Prefect server."""

import json

import pytest
from prefect.testing.utilities import prefect_test_harness

from pipelines.tabular_flow import main, tabular_pipeline
from tests.conftest import tiny_params, write_params


@pytest.fixture(scope="module", autouse=True)
def prefect_server(tmp_path_factory):
    import os

    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    with prefect_test_harness(server_startup_timeout=180):
        yield


def test_flow_runs_the_same_stages(tmp_path, mlflow_uri):
    params = write_params(tmp_path / "params.yaml", tiny_params(tmp_path, mlflow_uri))
    state = tabular_pipeline(str(params), ["generate.rows=80"], return_state=True)
    assert state.is_completed()
    report = state.result()
    assert report["passed"] is True and 0 < report["metrics"]["quality_score"] <= 1
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["rows"] == 80 and manifest["mlflow_run_id"]


def test_flow_entry_point_bad_config_exits_2(tmp_path, capsys):
    params = write_params(tmp_path / "params.yaml", tiny_params(tmp_path, None))
    assert main(["--params", str(params), "--set", "model.nope=1"]) == 2
    assert "model.nope: unknown key" in capsys.readouterr().err
