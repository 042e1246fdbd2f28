"""Shared fixtures: real MLflow SQLite stores, tiny params files, bundled data."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from tests.tiny import TINY_TABLE

ROOT = Path(__file__).resolve().parents[1]
PENGUINS = ROOT / "data" / "penguins.csv"

QUIET = {
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


@pytest.fixture(scope="session", autouse=True)
def test_environment():
    """Telemetry off, and the venv's bin (synthgen, dvc) first on PATH for subprocess tests;
    the environment is restored when the session ends."""
    saved = dict(os.environ)
    for key, value in QUIET.items():
        os.environ.setdefault(key, value)
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module's tests (small CNNs on a shared box), restored after."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """A migrated MLflow SQLite store, made once per session (migrations take ~5 s)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_uri(tmp_path, mlflow_template) -> str:
    """A fresh, real MLflow SQLite store for one test."""
    db = tmp_path / "mlflow.db"
    shutil.copy(mlflow_template, db)
    return f"sqlite:///{db}"


def tiny_params(tmp_path: Path, mlflow_uri: str | None, **sections) -> dict:
    """A params dict for fast real runs: 2 epochs of ctgan on penguins."""
    params = {
        "data": {"path": str(PENGUINS), "target": "species"},
        "model": dict(TINY_TABLE),
        "generate": {"rows": 150},
        "validate": {"min": {"quality_score": 0.1, "gx_success_rate": 0.0}},
        "tracking": {"uri": mlflow_uri},
        "augment": {"seeds": 2},  # benefit repeats: 2 keep the dvc augment stage fast
        "output": {"dir": str(tmp_path / "out")},
    }
    for name, values in sections.items():
        params.setdefault(name, {}).update(values)
    return params


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path
