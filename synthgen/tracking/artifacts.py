"""Names and settings that tracking and its consumers share, with no MLflow import (so
:mod:`synthgen.consume` can use them without loading MLflow): the pyfunc artifact key and
the environment that keeps MLflow quiet."""

from __future__ import annotations

import os

PYFUNC_ARTIFACT = "synthesizer"  # key of the synthesizer directory among a pyfunc model's artifacts

#: MLflow's telemetry and progress bars, off unless the user set them (applied before the
#: first MLflow call, not at import).
QUIET_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
             "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def quiet_mlflow() -> None:
    """Set :data:`QUIET_ENV` where the environment leaves it unset."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
