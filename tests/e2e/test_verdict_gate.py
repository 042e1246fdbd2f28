"""Attacks on "a generator whose data failed (or was never validated) is not served by
default" and "sample output never replaces a directory synthgen did not create", through
the CLI and the MLflow pyfunc in fresh processes.

Two real tiny pipeline runs, each one ``synthgen run`` subprocess, share one MLflow SQLite
store and registered model: the first passes (version 1, ``champion``), the second fails an
impossible threshold (version 2, tagged rejected: ``candidate`` moved to it, ``champion`` not).
"""

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

from tests.conftest import tiny_params, write_params
from tests.tiny import TINY_GAN

pytestmark = pytest.mark.slow  # two whole CLI runs and fresh pyfunc processes (~2 min): `make test-team`

NAME = "gate-gen"
ALLOW = "pass --allow-unvalidated to sample anyway"


def synthgen(*args: str, cwd: Path, uri: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    if uri:
        env["MLFLOW_TRACKING_URI"] = uri
    return subprocess.run([sys.executable, "-m", "synthgen", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("synthgen: error: "), lines
    return lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mlflow_template):
    tmp = tmp_path_factory.mktemp("gate")
    shutil.copy(mlflow_template, tmp / "mlflow.db")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    outs = {}
    for label, floor, code in (("passed", 0.1, 0), ("rejected", 0.999, 1)):
        raw = tiny_params(tmp, uri, model=TINY_GAN, tracking={"registered_model": NAME},
                          validate={"min": {"quality_score": floor, "gx_success_rate": 0.0}},
                          output={"dir": str(tmp / label)})
        result = synthgen("run", "--params", str(write_params(tmp / f"{label}.yaml", raw)), cwd=tmp)
        assert result.returncode == code, result.stderr[-3000:]
        outs[label] = tmp / label
    return tmp, uri, outs


def test_a_rejected_model_directory_is_refused_unless_allowed(runs, tmp_path):
    _, _, outs = runs
    model = outs["rejected"] / "model"
    line = one_error_line(synthgen("sample", "--model", str(model), "--rows", "5", "--out", "x.csv", cwd=tmp_path))
    assert line == (f"synthgen: error: {model}: its synthetic data failed the trust gate (quality_score); {ALLOW}")
    assert list(tmp_path.iterdir()) == []  # nothing written
    allowed = synthgen("sample", "--model", str(model), "--rows", "5", "--out", "x.csv", "--allow-unvalidated",
                       cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert len(pd.read_csv(tmp_path / "x.csv")) == 5 and "failed the trust gate" in allowed.stderr  # a warning


def test_a_model_without_a_matching_verdict_is_never_validated(runs, tmp_path):
    """A bare copy has no manifest; a rejected model slipped into a passing run's directory
    meets a manifest that records another model's hash."""
    _, _, outs = runs
    shutil.copytree(outs["rejected"] / "model", tmp_path / "copy")
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    shutil.copy(outs["passed"] / "manifest.json", swapped / "manifest.json")
    shutil.copytree(outs["rejected"] / "model", swapped / "model")
    for ref in ("copy", "swapped/model"):
        line = one_error_line(synthgen("sample", "--model", ref, "--rows", "5", "--out", "x.csv", cwd=tmp_path))
        assert f"{ref}: no verdict on record for this model (never validated" in line and line.endswith(ALLOW)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "swapped"]


def test_a_rejected_registry_version_is_refused_through_the_cli(runs, tmp_path):
    _, uri, _ = runs
    ref = f"models:/{NAME}@candidate"
    line = one_error_line(synthgen("sample", "--model", ref, "--rows", "5", "--out", "x.csv", cwd=tmp_path, uri=uri))
    assert line == f"synthgen: error: {ref}: its synthetic data failed the trust gate (quality_score); {ALLOW}"
    assert list(tmp_path.iterdir()) == []
    champion = synthgen("sample", "--model", f"models:/{NAME}@champion", "--rows", "6", "--seed", "1",
                        "--out", "champion.parquet", cwd=tmp_path, uri=uri)
    assert champion.returncode == 0, champion.stderr[-2000:]
    assert len(pd.read_parquet(tmp_path / "champion.parquet")) == 6


FRESH = textwrap.dedent("""
    import json, sys
    import mlflow, pandas as pd

    def attempt(model, frame, **kwargs):
        try:
            return {"rows": len(model.predict(frame, **kwargs))}
        except Exception as exc:
            return {"error": type(exc).__name__, "message": str(exc)}

    candidate = mlflow.pyfunc.load_model(sys.argv[1] + "@candidate")
    champion = mlflow.pyfunc.load_model(sys.argv[1] + "@champion")
    print(json.dumps({
        "refused": attempt(candidate, pd.DataFrame({"rows": [4]})),
        "half_allowed": attempt(candidate, pd.DataFrame({"rows": [4, 2], "allow_unvalidated": [True, False]})),
        "column": attempt(candidate, pd.DataFrame({"rows": [4], "allow_unvalidated": [True]})),
        "params": attempt(candidate, pd.DataFrame({"rows": [3]}), params={"allow_unvalidated": True}),
        "champion": attempt(champion, pd.DataFrame({"rows": [5], "seed": [2]})),
    }))
""")


def test_the_pyfunc_in_a_fresh_process_refuses_a_rejected_version_unless_the_request_allows(runs, tmp_path):
    _, uri, _ = runs
    (tmp_path / "probe.py").write_text(FRESH)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    result = subprocess.run([sys.executable, "probe.py", f"models:/{NAME}"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("refused", "half_allowed"):
        assert out[key]["error"] == "ModelError", out[key]
        assert "its synthetic data failed the trust gate (quality_score)" in out[key]["message"]
        assert "allow_unvalidated=True" in out[key]["message"]
    assert out["column"] == {"rows": 4} and out["params"] == {"rows": 3} and out["champion"] == {"rows": 5}


def test_sample_never_replaces_a_foreign_directory(runs, tmp_path):
    """A folder that merely looks like synthgen output (it has a labels.csv) is not synthgen's."""
    _, _, outs = runs
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "labels.csv").write_text("file,label,class\nholiday.png,0,beach\n")
    (foreign / "holiday.png").write_bytes(b"not synthetic")
    before = {p.name: p.read_bytes() for p in foreign.iterdir()}
    line = one_error_line(synthgen("sample", "--model", str(outs["passed"] / "model"), "--rows", "5",
                                   "--out", "photos", cwd=tmp_path))
    assert line == ("synthgen: error: photos: exists and synthgen did not write it (no .synthgen-output marker); "
                    "synthgen replaces only its own output folders, so choose a new directory")
    assert {p.name: p.read_bytes() for p in foreign.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["photos"]
