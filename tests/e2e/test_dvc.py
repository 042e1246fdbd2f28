"""A real `dvc repro` and `dvc exp run` of the project's dvc.yaml in a temporary git repo."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synthgen.config import parse_params
from tests.conftest import ROOT, tiny_params


def status(repo) -> dict:
    """`dvc status --json`: stage name -> what changed (stdout only)."""
    result = subprocess.run(["dvc", "status", "--json"], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout or "{}")


def sh(*args, cwd, env=None):
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


VENV = Path(sys.prefix)  # the environment running the tests (the checkout's .venv under `make test`)


def unactivated() -> dict:
    """The environment of a shell where the venv is not activated: its bin is not on PATH."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = "/usr/bin:/bin"
    assert shutil.which("synthgen", path=env["PATH"]) is None
    return env


@pytest.fixture(scope="module")
def repo(tmp_path_factory, mlflow_template):
    repo = tmp_path_factory.mktemp("dvc-repo")
    shutil.copy(ROOT / "dvc.yaml", repo)
    (repo / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "synthgen.sh", repo / "scripts")  # what dvc.yaml's cmds run
    (repo / ".venv").symlink_to(VENV, target_is_directory=True)  # a checkout's .venv, as `make install` makes
    shutil.copytree(ROOT / "synthgen", repo / "synthgen", ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "data").mkdir()
    shutil.copy(ROOT / "data" / "penguins.csv", repo / "data")
    shutil.copy(mlflow_template, repo / "mlflow.db")
    params = tiny_params(repo, "sqlite:///mlflow.db")
    params["data"]["path"] = "data/penguins.csv"
    params["output"]["dir"] = "outputs/run"
    full = parse_params(params).to_dict()  # every section, as dvc.yaml names them
    (repo / "params.yaml").write_text(yaml.safe_dump(full, sort_keys=False))
    (repo / ".gitignore").write_text("mlflow.db\nmlruns/\nmlartifacts/\n__pycache__/\n.venv\n")
    sh("git", "init", "-q", cwd=repo)
    sh("git", "config", "user.email", "ci@example.com", cwd=repo)
    sh("git", "config", "user.name", "ci", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "init", cwd=repo)
    return repo


def test_repro_runs_all_stages_then_nothing(repo):
    """`.venv/bin/dvc repro` as README words it: the venv is not activated (not on PATH)."""
    sh(str(VENV / "bin" / "dvc"), "repro", cwd=repo, env=unactivated())
    out = repo / "outputs" / "run"
    for name in ("schema.json", "model/synthesizer.json", "synthetic.parquet", "manifest.json", "validation.json",
                 "augment/augmented.parquet", "augment/DATASHEET.md"):
        assert (out / name).exists(), name
    # augment runs after validate (it depends on manifest.json) and records the verdict
    verdict = json.loads((out / "augment" / "manifest.json").read_text())["generator_validation"]
    assert verdict["passed"] is json.loads((out / "manifest.json").read_text())["validation"]["passed"] is True
    again = sh("dvc", "repro", cwd=repo)
    assert "Running stage" not in again
    metrics = sh("dvc", "metrics", "show", "--json", cwd=repo)
    assert "quality_score" in metrics
    plots = json.loads(sh("dvc", "plots", "show", "--json", "--split", cwd=repo))
    assert "Training losses" in plots["data"]


def test_param_change_reruns_only_downstream(repo):
    sh("dvc", "repro", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "baseline", cwd=repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["generate"]["rows"] = 90
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    log = sh("dvc", "repro", cwd=repo)
    assert "Running stage 'generate'" in log and "Running stage 'validate'" in log
    assert "Running stage 'augment'" in log  # it reads manifest.json, which validate rewrote
    assert "Running stage 'train'" not in log and "Running stage 'ingest'" not in log
    manifest = json.loads((repo / "outputs" / "run" / "manifest.json").read_text())
    assert manifest["rows"] == 90
    sh("git", "checkout", "--", "params.yaml", "dvc.lock", cwd=repo)


def test_stage_command_finds_the_venv_without_path(repo, tmp_path):
    """scripts/synthgen.sh (every dvc.yaml cmd) runs the checkout's .venv when PATH lacks it,
    and says what to do, in one line, when there is no synthgen anywhere."""
    assert sh("sh", "scripts/synthgen.sh", "--version", cwd=repo, env=unactivated()).startswith("synthgen, version")
    (tmp_path / "scripts").mkdir()
    shutil.copy(repo / "scripts" / "synthgen.sh", tmp_path / "scripts")  # a checkout without .venv
    result = subprocess.run(["sh", "scripts/synthgen.sh", "--version"], cwd=tmp_path, env=unactivated(),
                            capture_output=True, text=True)
    assert result.returncode == 127 and "make install" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.slow  # ~40 s (a dvc repro after the previous test's checkout); `make test-team`
@pytest.mark.parametrize("code", ["synthgen/training/dp.py", "synthgen/training/disc_augment.py"])
def test_dp_or_disc_augment_code_change_marks_train_changed(repo, code):
    """Editing the DP-SGD or discriminator-augmentation code makes `dvc status` report train."""
    sh("dvc", "repro", cwd=repo)
    assert "train" not in status(repo)
    path = repo / code
    original = path.read_text()
    try:
        path.write_text(original + "\n# edited\n")
        changed = status(repo)
        assert "train" in changed, changed
    finally:
        path.write_text(original)


@pytest.mark.slow  # ~45 s: a second whole pipeline through `dvc exp run`; `make test-team`
def test_exp_run_with_set_param(repo):
    log = sh("dvc", "exp", "run", "-S", "model.epochs=3", cwd=repo)
    assert "Running stage 'train'" in log
    shown = sh("dvc", "exp", "show", "--json", cwd=repo)
    assert '"epochs": 3' in shown.replace("'", '"') or "epochs" in shown
