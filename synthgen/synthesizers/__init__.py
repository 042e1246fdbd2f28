"""Synthesizer families behind one interface, the registry that names them, and the loader.

``model.name`` in params.yaml is a key of :data:`REGISTRY`. Adding a family means
adding a module with a :class:`~synthgen.synthesizers.base.Synthesizer` subclass (for
tables, a :class:`~synthgen.synthesizers.tabular.TabularSynthesizer`) and one line here.
:func:`check_model` validates ``model.name`` against ``data.kind``; :func:`load` reads
any saved model directory (``synthgen.load``) without running code from it (JSON and
plain tensors, :mod:`synthgen.synthesizers.persistence`); :func:`upgrade_model` converts
a directory saved by an older synthgen as pickles, once (``synthgen upgrade-model``).
"""

from __future__ import annotations

from pathlib import Path

from synthgen.errors import ConfigError, ModelError
from synthgen.synthesizers.base import META_FILE, Synthesizer, read_meta
from synthgen.synthesizers.ctgan_backend import CTGANSynthesizer
from synthgen.synthesizers.dp_marginals import DPMarginalsSynthesizer
from synthgen.synthesizers.image_cgan import ImageCGANSynthesizer
from synthgen.synthesizers.legacy import upgrade_model
from synthgen.synthesizers.tabular import TabularSynthesizer
from synthgen.synthesizers.tabular_gan import TabularGANSynthesizer

REGISTRY: dict[str, type[Synthesizer]] = {
    CTGANSynthesizer.name: CTGANSynthesizer,
    TabularGANSynthesizer.name: TabularGANSynthesizer,
    DPMarginalsSynthesizer.name: DPMarginalsSynthesizer,
    ImageCGANSynthesizer.name: ImageCGANSynthesizer,
}


def check_model(name: str, data_kind: str, source: str = "params") -> None:
    """Check that ``model.name`` names a family that models ``data.kind`` data.

    Raises:
        ConfigError: an unknown name (``source`` prefixes the message), or a family of
            another data kind.
    """
    family = REGISTRY.get(name)
    if family is None:
        raise ConfigError(f"{source}: model.name: unknown model {name!r}; choose one of {sorted(REGISTRY)}")
    if family.data_kind == data_kind:
        return
    if family.data_kind == "image":
        raise ConfigError(f"model.name: {name!r} models images; set data.kind: image")
    images = sorted(n for n, f in REGISTRY.items() if f.data_kind == "image")
    needs = images[0] if len(images) == 1 else images
    raise ConfigError(f"model.name: {name!r} models tables; data.kind: {data_kind} needs {needs!r}")


def load(directory: str | Path) -> Synthesizer:
    """Load a fitted synthesizer of any registered family from a directory written by ``save``.

    Raises:
        ModelError: not a model directory, a corrupt or incomplete one, an unknown family,
            a file holding pickled objects, or a directory saved by an older synthgen as
            pickles (the message names ``synthgen upgrade-model``).
    """
    meta = read_meta(directory)
    family = REGISTRY.get(meta.get("name"))
    if family is None:
        raise ModelError(f"{Path(directory) / META_FILE}: unknown model {meta.get('name')!r}")
    return family.load(directory)


__all__ = ["META_FILE", "REGISTRY", "Synthesizer", "TabularSynthesizer", "check_model", "load", "upgrade_model"]
