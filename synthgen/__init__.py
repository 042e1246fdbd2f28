"""synthgen: trustworthy, reproducible synthetic data from small real datasets.

Public API::

    import synthgen
    model = synthgen.load("outputs/demo/model")  # refused unless the run's verdict passed
    frame = model.sample(100, conditions={"species": "Adelie"}, seed=0)
    dataset = synthgen.load_dataset("outputs/demo/published")  # .data, .manifest, .datasheet

Heavy modules (torch, the synthesizers) load on first use, so ``import synthgen``
and ``synthgen --help`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synthgen.version import __version__

if TYPE_CHECKING:
    from synthgen.consume import SyntheticDataset
    from synthgen.synthesizers.base import Synthesizer


def load(directory: Any, allow_unvalidated: bool = False) -> Synthesizer:
    """Load a fitted synthesizer from a model directory, if its synthetic data passed the trust gate.

    ``directory`` is a run's ``model/`` (its verdict is the run's ``manifest.json`` beside
    it, whose ``model_hash`` must match the directory) or a downloaded pyfunc model (its
    logged ``verdict.json``). A model whose verdict failed or was never recorded is refused
    unless ``allow_unvalidated=True`` (default ``False``), which loads it with a warning.
    An MLflow URI (``models:/NAME@ALIAS``, with ``MLFLOW_TRACKING_URI`` set) is gated the
    same way (see :func:`synthgen.consume.open_model`). The pipeline's own stages load
    through :func:`synthgen.synthesizers.load`, ungated.

    Raises:
        ModelError: not a model directory, or a failed / missing verdict (names the
            failed checks, or says it was never validated).
    """
    from synthgen.consume import open_model
    from synthgen.tracking.gate import API_HINT

    return open_model(directory, allow_unvalidated=allow_unvalidated, hint=API_HINT)


def load_dataset(path: Any, allow_failed: bool = False) -> SyntheticDataset:
    """Load a published synthetic dataset with its manifest (see :func:`synthgen.consume.load_dataset`).

    ``path`` is a ``published/`` directory, a run's ``output.dir`` or its ``manifest.json``;
    data whose verdict failed is refused unless ``allow_failed=True`` (default ``False``).
    """
    from synthgen.consume import load_dataset as _load_dataset

    return _load_dataset(path, allow_failed=allow_failed)


__all__ = ["__version__", "load", "load_dataset"]
