"""Synthesizer families behind one interface, and the registry that names them.

``model.name`` in params.yaml is a key of :data:`REGISTRY`. Adding a family means
adding a module with a :class:`~synthgen.synthesizers.base.Synthesizer` subclass and
one line here.
"""

from __future__ import annotations

from synthgen.synthesizers.base import Synthesizer
from synthgen.synthesizers.ctgan_backend import CTGANSynthesizer
from synthgen.synthesizers.image_cgan import ImageCGANSynthesizer
from synthgen.synthesizers.tabular_gan import TabularGANSynthesizer

# Tabular families subclass Synthesizer; image_cgan (data.kind: image) has the same method
# names but its own data type, and loads itself (``loads_itself``).
REGISTRY: dict[str, type] = {
    CTGANSynthesizer.name: CTGANSynthesizer,
    TabularGANSynthesizer.name: TabularGANSynthesizer,
    ImageCGANSynthesizer.name: ImageCGANSynthesizer,
}

__all__ = ["REGISTRY", "Synthesizer"]
