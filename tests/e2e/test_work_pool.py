"""Prefect work pools (issue 19): ``prefect deploy --all`` from the project's ``prefect.yaml``
onto a process work pool of a real loopback server, a worker started as on a second
machine (``SYNTHGEN_HOME`` pointing at its checkout), two triggers of one deployment: the
first runs to a published verdict, the second waits for the concurrency limit and runs
after it, never beside it. Slow (a server, a worker, two flow runs): ``make test-team``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, tiny_params, write_params

pytestmark = pytest.mark.slow
PREFECT = Path(sys.executable).with_name("prefect")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prefect(*args: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    result = subprocess.run([str(PREFECT), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"prefect {' '.join(args)}: {result.stdout[-2000:]} {result.stderr[-2000:]}"
    return result


def test_prefect_yaml_deploys_to_a_process_pool_whose_worker_runs_one_at_a_time(tmp_path, mlflow_uri):
    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipelines.serve import local_server

    home = tmp_path / "prefect-home"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "SYNTHGEN_HOME")}
    env.update(PREFECT_HOME=str(home), PREFECT_UI_ENABLED="false")
    params = write_params(tmp_path / "params.yaml", tiny_params(tmp_path, mlflow_uri))
    with local_server(free_port(), home=home, timeout=300, log_file=tmp_path / "server.log") as api_url:
        env["PREFECT_API_URL"] = api_url
        prefect("work-pool", "create", "synthgen", "--type", "process", env=env)
        deployed = prefect("--no-prompt", "deploy", "--all", env=env)
        assert "synthgen-tabular/tabular" in deployed.stdout and "synthgen-images/images" in deployed.stdout
        worker_log = open(tmp_path / "worker.log", "wb")
        worker = subprocess.Popen([str(PREFECT), "worker", "start", "--pool", "synthgen", "--type", "process"],
                                  env={**env, "SYNTHGEN_HOME": str(ROOT)}, cwd=tmp_path, stdout=worker_log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            with temporary_settings({PREFECT_API_URL: api_url}):
                with get_client(sync_client=True) as client:
                    deployment = client.read_deployment_by_name("synthgen-tabular/tabular")
                    assert deployment.work_pool_name == "synthgen"
                    assert deployment.global_concurrency_limit.limit == 1
                    assert [s.schedule.cron for s in deployment.schedules] == ["0 2 * * *"]
                # the same output.dir for both: only the concurrency limit keeps them apart
                runs = [run_deployment("synthgen-tabular/tabular", timeout=0,
                                       parameters={"params_file": str(params), "overrides": [f"model.seed={seed}"]})
                        for seed in (0, 1)]
                seen: list[tuple[str, str]] = []
                deadline = time.monotonic() + 900
                with get_client(sync_client=True) as client:
                    while True:
                        states = [client.read_flow_run(run.id).state for run in runs]
                        seen.append(tuple(s.name for s in states))
                        assert not all(s.is_running() for s in states), "both runs ran at once"
                        if all(s.is_final() for s in states):
                            break
                        assert time.monotonic() < deadline, (seen[-5:], (tmp_path / "worker.log").read_text()[-3000:])
                        time.sleep(1)
                    finished = [client.read_flow_run(run.id) for run in runs]
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)
            worker_log.close()
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert all(run.state.is_completed() for run in finished), ([r.state for r in finished], log[-3000:])
    first, second = sorted(finished, key=lambda run: run.start_time)
    assert second.start_time >= first.end_time  # queued, then run after the first
    assert any("AwaitingConcurrencySlot" in names for names in seen), sorted(set(seen))  # held by the limit
    manifest = json.loads((tmp_path / "out" / "published" / "manifest.json").read_text())
    assert manifest["validation"]["passed"] is True
