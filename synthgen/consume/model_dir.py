"""Where the synthesizer sits in a model directory: the directory itself, or the
artifact of a synthgen pyfunc model (:func:`synthesizer_dir`). A leaf shared by
:mod:`synthgen.consume.models` and :mod:`synthgen.tracking.pyfunc`.
"""

from __future__ import annotations

from pathlib import Path

from synthgen.errors import ModelError
from synthgen.tracking.artifacts import PYFUNC_ARTIFACT


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
