"""Nothing lost, nothing mixed (issue 16), through the real CLI in separate processes:
``kill -9`` at many points of ``synthgen run`` followed by a rerun; two writers on one
``output.dir``; two runs sharing one fresh SQLite MLflow store.

The kill test prints (and records as test properties) how many kills it tried, how many
reruns recovered and the seconds each kill cost; BENCHMARKS.md ("Crash safety") has a
run of it: ``pytest -m slow tests/e2e/test_kill_recovery.py -s``. ``SYNTHGEN_KILLS``
sets the number of kills (default 30; ``make test-team``, which CI runs, sets 10 - ``TEAM_KILLS``
in the Makefile - to keep ``.ci/run`` within its 45 minutes).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synthgen.io import LOCK_FILE, OLD_SUFFIX, TMP_PREFIX, file_hash
from tests.conftest import tiny_params, write_params

pytestmark = pytest.mark.slow
STAGE = re.compile(r"\b(ingest|train|generate|validate|published)\b")


def start(params: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as handle:
        return subprocess.Popen([sys.executable, "-m", "synthgen", "run", "--params", str(params)],
                                stdout=handle, stderr=subprocess.STDOUT, text=True)


def run(params: Path, log: Path) -> tuple[int, float]:
    began = time.perf_counter()
    process = start(params, log)
    return process.wait(timeout=600), time.perf_counter() - began


def last_stage(log: Path) -> str:
    found = STAGE.findall(log.read_text(errors="replace"))
    return found[-1] if found else "start-up"


def check_published(out: Path) -> str | None:
    """``published/`` is absent or a whole, passing publication whose manifest hashes match
    its files; returns the data's hash (None when absent)."""
    published = out / "published"
    if not published.exists():
        return None
    manifest = json.loads((published / "manifest.json").read_text())
    assert manifest["validation"]["passed"] is True
    digest = file_hash(published / manifest["synthetic"])
    assert digest[:36] == manifest["synthetic_hash"], "published data does not match its manifest"
    assert (published / "report.html").is_file() and (published / "DATASHEET.md").is_file()
    return digest


def debris(out: Path) -> list[str]:
    return [str(p) for p in out.rglob("*") if p.name.startswith(TMP_PREFIX) or p.name.endswith(OLD_SUFFIX)
            or p.name == LOCK_FILE]


def running_runs(uri: str) -> list[str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return [r.info.run_id for r in client.search_runs(experiments, "attributes.status = 'RUNNING'")]


def test_kill_9_anywhere_in_a_run_then_rerun(tmp_path, mlflow_uri, record_property):
    params = write_params(tmp_path / "params.yaml", tiny_params(
        tmp_path, mlflow_uri, model={"name": "tabular_gan", "epochs": 4, "checkpoint_every": 1},
        tracking={"registered_model": "kill-test"}))
    out = tmp_path / "out"
    code, reference = run(params, tmp_path / "reference.log")
    assert code == 0, (tmp_path / "reference.log").read_text()[-3000:]
    good = {check_published(out)}
    kills = int(os.environ.get("SYNTHGEN_KILLS", "30"))
    rng = random.Random(16)
    rows, durations = [], [reference]
    for i in range(kills):
        expected = statistics.median(durations[-5:])  # a shared machine's run time drifts: follow it
        delay = expected * (i + rng.random()) / kills  # spread over the whole run: start-up to publish
        log = tmp_path / f"kill-{i:02d}.log"
        began = time.perf_counter()
        process = start(params, log)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        status = process.wait()
        killed_after = time.perf_counter() - began
        published = check_published(out)  # right after the kill: absent, or a whole good publication
        code, seconds = run(params, tmp_path / f"rerun-{i:02d}.log")
        assert code == 0, (tmp_path / f"rerun-{i:02d}.log").read_text()[-3000:]
        durations.append(seconds)  # a rerun resumes training, so this errs short: kills land earlier
        digest = check_published(out)
        assert digest is not None and published in good | {digest, None}
        good.add(digest)
        assert debris(out) == [], debris(out)
        assert running_runs(mlflow_uri) == [], "an MLflow run stayed RUNNING"
        rows.append({"kill": i, "at_s": round(delay, 2), "stage": last_stage(log),
                     "killed": status == -signal.SIGKILL, "lost_s": round(killed_after + seconds - reference, 2)})
    stages = {}
    for row in rows:
        stages[row["stage"]] = stages.get(row["stage"], 0) + 1
    summary = {"kills": len(rows), "recovered": len(rows), "reference_s": round(reference, 1),
               "lost_s_median": statistics.median(r["lost_s"] for r in rows),
               "lost_s_max": max(r["lost_s"] for r in rows), "killed_in": stages,
               "killed_before_exit": sum(r["killed"] for r in rows)}
    print("kill test:", json.dumps(summary))
    for row in rows:
        print("  ", json.dumps(row))
    for key, value in summary.items():
        record_property(key, value)
    assert summary["killed_before_exit"] >= kills * 0.7  # the kills landed inside runs, not after them
    if kills >= 20:  # enough kills to reach the stages that take time
        assert {"train", "validate"} <= set(stages)


def test_a_second_writer_of_one_output_dir_exits_2_and_mixes_nothing(tmp_path, mlflow_uri):
    params = write_params(tmp_path / "params.yaml", tiny_params(tmp_path, mlflow_uri))
    out = tmp_path / "out"
    first = start(params, tmp_path / "first.log")
    deadline = time.time() + 120
    while not (out / LOCK_FILE).exists():
        assert time.time() < deadline and first.poll() is None, (tmp_path / "first.log").read_text()
        time.sleep(0.05)
    second = subprocess.run([sys.executable, "-m", "synthgen", "run", "--params", str(params)],
                            capture_output=True, text=True)
    assert second.returncode == 2
    assert re.search(rf"synthgen: error: {out}: another synthgen run is writing here \(pid {first.pid} ",
                     second.stderr), second.stderr
    assert "Traceback" not in second.stderr
    assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()[-3000:]
    from synthgen.consume import load_dataset

    for where in (out, out / "published"):  # one run's data under one run's manifest
        assert load_dataset(where).manifest["mlflow_run_id"] == json.loads((out / "tracking.json").read_text())["run_id"]


def test_two_runs_share_one_new_sqlite_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'shared' / 'mlflow.db'}"  # not created yet: both runs race to create it
    processes = []
    for name in ("a", "b"):
        raw = tiny_params(tmp_path / name, uri, tracking={"registered_model": "shared-store"})
        (tmp_path / name).mkdir()
        params = write_params(tmp_path / name / "params.yaml", raw)
        processes.append(start(params, tmp_path / f"{name}.log"))
    for name, process in zip("ab", processes):
        assert process.wait(timeout=900) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("synthgen").experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    versions = client.search_model_versions("name = 'shared-store'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert {v.run_id for v in versions} == {r.info.run_id for r in runs}
