"""synthgen: trustworthy, reproducible synthetic data from small real datasets.

Public API::

    import synthgen
    model = synthgen.load("outputs/demo/model")
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


def load(directory: Any) -> Synthesizer:
    """Load a fitted synthesizer from a model directory written by ``save``."""
    from synthgen.synthesizers import load as load_model

    return load_model(directory)


def load_dataset(path: Any, allow_failed: bool = False) -> SyntheticDataset:
    """Load a published synthetic dataset with its manifest (see :func:`synthgen.consume.load_dataset`).

    ``path`` is a ``published/`` directory, a run's ``output.dir`` or its ``manifest.json``;
    data whose verdict failed is refused unless ``allow_failed=True`` (default ``False``).
    """
    from synthgen.consume import load_dataset as _load_dataset

    return _load_dataset(path, allow_failed=allow_failed)


__all__ = ["__version__", "load", "load_dataset"]
