"""synthgen: trustworthy, reproducible synthetic data from small real datasets.

Public API::

    import synthgen
    model = synthgen.load("outputs/demo/model")
    frame = model.sample(100, conditions={"species": "Adelie"}, seed=0)

Heavy modules (torch, the synthesizers) load on first use, so ``import synthgen``
and ``synthgen --help`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from synthgen.synthesizers.base import Synthesizer


def load(directory: Any) -> Synthesizer:
    """Load a fitted synthesizer from a model directory written by ``save``."""
    from synthgen.synthesizers.base import Synthesizer

    return Synthesizer.load(directory)


__all__ = ["__version__", "load"]
