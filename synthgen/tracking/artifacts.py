"""What tracking and its consumers share, with no MLflow import (so :mod:`synthgen.consume`
can use it without loading MLflow): the pyfunc artifact key, where the synthesizer sits in
a model directory (:func:`synthesizer_dir`), and the environment that keeps MLflow quiet."""

from __future__ import annotations

import os
from pathlib import Path

from synthgen.errors import ModelError

PYFUNC_ARTIFACT = "synthesizer"  # key of the synthesizer directory among a pyfunc model's artifacts

#: MLflow's telemetry and progress bars, off unless the user set them (applied before the
#: first MLflow call, not at import).
QUIET_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
             "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def quiet_mlflow() -> None:
    """Set :data:`QUIET_ENV` where the environment leaves it unset."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def synthesizer_dir(path: Path) -> Path:
    """The synthesizer directory in ``path``: ``path`` itself, or the artifact of a pyfunc model.

    Raises:
        ModelError: ``path`` holds neither a synthesizer nor a synthgen pyfunc model.
    """
    import yaml

    if (path / "synthesizer.json").is_file():
        return path
    mlmodel = path / "MLmodel"
    if mlmodel.is_file():
        flavor = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {}).get("python_function", {})
        artifact = (flavor.get("artifacts") or {}).get(PYFUNC_ARTIFACT) or {}
        if artifact.get("path") and (path / artifact["path"] / "synthesizer.json").is_file():
            return path / artifact["path"]
        raise ModelError(f"{path}: an MLflow model, but not a synthgen generator")
    raise ModelError(f"{path}: not a synthgen model directory (no synthesizer.json or MLmodel)")
