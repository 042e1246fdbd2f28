"""Synthesizer families behind one interface, and the registry that names them.

``model.name`` in params.yaml is a key of :data:`REGISTRY`. Adding a family means
adding a module with a :class:`~synthgen.synthesizers.base.Synthesizer` subclass and
one line here.
"""

from __future__ import annotations

from synthgen.synthesizers.base import Synthesizer
from synthgen.synthesizers.ctgan_backend import CTGANSynthesizer
from synthgen.synthesizers.tabular_gan import TabularGANSynthesizer

REGISTRY: dict[str, type[Synthesizer]] = {
    CTGANSynthesizer.name: CTGANSynthesizer,
    TabularGANSynthesizer.name: TabularGANSynthesizer,
}

__all__ = ["REGISTRY", "Synthesizer"]
