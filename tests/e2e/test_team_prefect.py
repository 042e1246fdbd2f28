"""Schedules and caching on a real Prefect server (``prefect server start`` on loopback).

The server tests are slow (a fresh server migrates its database, each flow run trains):
``make test-team`` / ``pytest -m slow tests/e2e/test_team_prefect.py``. The stamp logic behind
the cache is checked without a server in the default suite.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from pipelines import caching
from synthgen.config import parse_params
from tests.conftest import ROOT, tiny_params, write_params


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- stamps (no server) ---------------------------------------------------------------------
def test_stamp_tracks_outputs_and_upstream_changes(tmp_path):
    params = parse_params(tiny_params(tmp_path, None))
    out = params.out
    out.mkdir(parents=True)
    (out / "old.txt").write_text("kept")

    def fake_ingest(p):
        (p.out / "schema.json").write_text("{}")
        return {"ok": 1}

    digest = caching.stage_digest("ingest", params)
    assert caching.run_stamped("ingest", fake_ingest, params) == {"ok": 1}
    stamp = caching.read_stamp(out, "ingest")
    assert list(stamp["outputs"]) == ["schema.json"]  # old.txt was not written by the stage
    assert caching.outputs_intact("ingest", params, digest)
    train_digest = caching.stage_digest("train", params)

    (out / "schema.json").write_text('{"changed": true}')  # e.g. a CLI run with other params
    assert not caching.outputs_intact("ingest", params, digest)
    assert caching.stage_digest("train", params) != train_digest  # downstream sees the change
    (out / "schema.json").unlink()
    assert not caching.outputs_intact("ingest", params, digest)
    other = parse_params(tiny_params(tmp_path, None, model={"epochs": 3}))
    assert caching.stage_digest("ingest", other) != digest  # params are part of the key


def test_serve_rejects_bad_params_before_starting(tmp_path, capsys):
    from pipelines.serve import main

    params = write_params(tmp_path / "params.yaml", tiny_params(tmp_path, None))
    assert main(["--params", str(params), "--set", "model.nope=1", "--image-params", "none",
                 "--start-server"]) == 2
    assert "model.nope: unknown key" in capsys.readouterr().err
    assert main(["--params", str(params), "--image-params", str(params)]) == 2
    assert "data.kind is 'tabular'; this deployment runs image" in capsys.readouterr().err


# -- a real server ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``prefect server start`` on a free loopback port with its own PREFECT_HOME."""
    from prefect.settings import (PREFECT_API_URL, PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH,
                                  temporary_settings)

    from pipelines.serve import local_server

    home = tmp_path_factory.mktemp("prefect-server-home")
    os.environ["PREFECT_UI_ENABLED"] = "false"  # the server needs no UI here
    with local_server(_free_port(), home=home, timeout=300, log_file=home / "server.log") as api_url:
        with temporary_settings({PREFECT_API_URL: api_url, PREFECT_HOME: str(home),
                                 PREFECT_LOCAL_STORAGE_PATH: str(home / "storage")}):
            yield {"url": api_url, "home": home}


def _task_states(flow_run_id) -> dict[str, str]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name.rsplit("-", 1)[0]: run.state.name for run in runs}


@pytest.mark.slow
def test_served_deployment_runs_to_completion(server, tmp_path, mlflow_uri):
    from prefect import get_client
    from prefect.deployments import run_deployment

    params = write_params(tmp_path / "params.yaml", tiny_params(tmp_path, mlflow_uri))
    env = dict(os.environ, PREFECT_API_URL=server["url"], PREFECT_HOME=str(server["home"]),
               PREFECT_LOCAL_STORAGE_PATH=str(server["home"] / "storage"))
    log = open(tmp_path / "serve.log", "wb")
    serving = subprocess.Popen(
        [sys.executable, "-m", "pipelines.serve", "--params", str(params), "--set", "generate.rows=60",
         "--cron", "0 4 * * *", "--image-params", str(ROOT / "params.images.yaml")],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + 180
            while True:
                try:
                    tabular = client.read_deployment_by_name("synthgen-tabular/tabular")
                    images = client.read_deployment_by_name("synthgen-images/images")
                    break
                except Exception:  # not registered yet
                    assert serving.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                    assert time.monotonic() < deadline, "deployments not registered in 180 s"
                    time.sleep(2)
        assert [s.schedule.cron for s in tabular.schedules] == ["0 4 * * *"]
        assert [s.schedule.cron for s in images.schedules] == ["0 3 * * *"]
        assert tabular.parameters == {"params_file": str(params), "overrides": ["generate.rows=60"]}

        run = run_deployment("synthgen-tabular/tabular", timeout=420)
        assert run.state.is_completed(), (run.state, (tmp_path / "serve.log").read_text()[-3000:])
        assert set(_task_states(run.id).values()) == {"Completed"}
        import pandas as pd

        assert len(pd.read_parquet(tmp_path / "out" / "synthetic.parquet")) == 60
        assert (tmp_path / "out" / "manifest.json").is_file()
    finally:
        from pipelines.serve import _stop

        _stop(serving)
        log.close()


@pytest.mark.slow
def test_unchanged_rerun_is_a_cache_hit_and_keeps_outputs(server, tmp_path, mlflow_uri):
    from pipelines.tabular_flow import tabular_pipeline

    params = str(write_params(tmp_path / "params.yaml", tiny_params(tmp_path, mlflow_uri)))
    first = tabular_pipeline(params, [], return_state=True)
    assert first.is_completed()
    assert set(_task_states(first.state_details.flow_run_id).values()) == {"Completed"}

    second = tabular_pipeline(params, [], return_state=True)
    assert _task_states(second.state_details.flow_run_id) == dict.fromkeys(caching.STAGES, "Cached")
    assert second.result()["metrics"] == first.result()["metrics"]

    # a cache hit must never stand for files that are gone: delete one output, run again
    synthetic = tmp_path / "out" / "synthetic.parquet"
    before = synthetic.read_bytes()
    synthetic.unlink()
    third = tabular_pipeline(params, [], return_state=True)
    states = _task_states(third.state_details.flow_run_id)
    assert states == {"ingest": "Cached", "train": "Cached", "generate": "Completed", "validate": "Cached"}
    assert synthetic.read_bytes() == before  # same seed, same bytes: validate's inputs are unchanged

