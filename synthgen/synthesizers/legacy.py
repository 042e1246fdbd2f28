"""Converting a model directory saved by an older synthgen (pickles) to the safe format, once.

synthgen 0.1.0 saved models as pickles (format 1: no ``format`` key in
``synthesizer.json``): ``tabular_gan.pt`` and ``transformers.pkl`` (the pickled
``TablePreparer`` and ``ModeNormalizer``), ``ctgan.pt`` and ``preparer.pkl``,
``image_cgan.pt``. A pickle can run any code it names when it is loaded, so
:func:`synthgen.synthesizers.load` refuses those directories and names the command that
converts them.

:func:`upgrade_model` (``synthgen upgrade-model --model DIR [--out DIR]``) is that
conversion. Even there no pickle is read without restriction: the ``.pkl`` files go
through an unpickler that builds only the classes of :data:`LEGACY_PICKLE_GLOBALS`
(synthgen's old preparer, normalizer and schema, numpy arrays), the ``.pt`` files through
``torch.load(weights_only=True)`` with ctgan's allow-list
(:data:`synthgen.synthesizers.ctgan_backend.CTGAN_GLOBALS`, which also covers numpy
arrays); a file naming any other global (a planted payload) is refused with a
:class:`ModelError` naming the file and the global, before anything it names is called.
It reads the old files, re-saves the model in the
current format (:mod:`synthgen.synthesizers.persistence`) with the old
``synthesizer.json`` record kept (plus ``format``) and any other files of the directory
copied, checks that the result loads through the safe path and draws the same rows for
the same seed, and only then replaces the directory (atomically) or writes ``out``.
"""

from __future__ import annotations

import json
import logging
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthgen.errors import ModelError
from synthgen.io import atomic_path
from synthgen.synthesizers.base import META_FILE, Synthesizer, read_meta
from synthgen.synthesizers.ctgan_backend import SAFE_LOAD_LOCK, CTGANSynthesizer, allowed_globals, load_ctgan
from synthgen.synthesizers.image_cgan import ImageCGANSynthesizer
from synthgen.synthesizers.persistence import FORMAT, FORMAT_KEY, check_format, unsafe_message
from synthgen.synthesizers.tabular_gan import TabularGANSynthesizer

log = logging.getLogger(__name__)

FAMILIES: dict[str, type[Synthesizer]] = {
    cls.name: cls for cls in (TabularGANSynthesizer, CTGANSynthesizer, ImageCGANSynthesizer)
}

#: The files each family's format-1 directory holds besides ``synthesizer.json``.
LEGACY_FILES: dict[str, tuple[str, ...]] = {
    "tabular_gan": ("tabular_gan.pt", "transformers.pkl"),
    "ctgan": ("ctgan.pt", "preparer.pkl"),
    "image_cgan": ("image_cgan.pt",),
}

CHECK_DRAW = 16  # rows (images) drawn from the old and the converted model, seed 0: they must match


def is_legacy(directory: str | Path) -> bool:
    """Whether ``directory`` is a model saved by an older synthgen (no ``format`` in its meta).

    Raises:
        ModelError: not a model directory.
    """
    return read_meta(directory).get(FORMAT_KEY) in (None, 1)


#: The only globals a format-1 ``.pkl`` file may name (found by listing what the pickles
#: synthgen 0.1.0 wrote ask for): anything else is refused before it is looked up.
LEGACY_PICKLE_GLOBALS: frozenset[str] = frozenset({
    "synthgen.transformers.prepare.TablePreparer",
    "synthgen.transformers.mode_normalizer.ModeNormalizer",
    "synthgen.transformers.mode_normalizer.Span",
    "synthgen.data.schema.TableSchema",
    "synthgen.data.schema.ColumnSpec",
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray._reconstruct",  # numpy < 2 wrote this name
    "numpy.ndarray",
    "numpy.dtype",
})


class LegacyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`LEGACY_PICKLE_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        if f"{module}.{name}" not in LEGACY_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return super().find_class(module, name)


def _read_pickle(path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            return LegacyUnpickler(fh).load()
    except pickle.UnpicklingError as exc:
        raise ModelError(f"{path}: refused ({exc}); an old synthgen model holds only its preparer, "
                         "normalizer and numpy arrays") from None


def _read_torch(path: Path) -> Any:
    import torch

    try:
        with SAFE_LOAD_LOCK, torch.serialization.safe_globals(allowed_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelError(unsafe_message(path, exc)) from None


def _read_legacy(model: Any, directory: Path) -> None:
    """Restore ``model``'s fitted state from the old pickles in ``directory``."""
    files = [directory / name for name in LEGACY_FILES[model.name]]
    try:
        if model.name == "tabular_gan":
            parts = _read_pickle(files[1])
            model.restore_fitted(_read_torch(files[0]), parts["preparer"], parts["normalizer"])
        elif model.name == "ctgan":
            model.restore_fitted(load_ctgan(files[0]), _read_pickle(files[1]))
        else:
            model.restore_fitted(_read_torch(files[0]))
    except FileNotFoundError as exc:
        raise ModelError(f"{directory}: incomplete {model.name} model ({Path(exc.filename).name} missing)") from None
    except ModelError:
        raise
    except Exception as exc:  # whatever an old pickle raises: name it, keep the directory
        raise ModelError(f"{directory}: cannot be read as a {model.name} model of an older synthgen "
                         f"({type(exc).__name__}: {exc})") from None


def _same_draw(old: Synthesizer, new: Synthesizer) -> bool:
    a, b = old.sample(CHECK_DRAW, seed=0), new.sample(CHECK_DRAW, seed=0)
    if isinstance(a, pd.DataFrame):
        return a.equals(b)
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def upgrade_model(directory: str | Path, out: str | Path | None = None) -> Path:
    """Convert a model directory saved by an older synthgen (pickles) to the safe format.

    It reads the old pickles through allow-lists (see the module docstring): a file that
    names anything else is refused, not run.

    Args:
        directory: the old model directory.
        out: where to write the converted model, a new directory; default ``None``:
            replace ``directory`` in place, atomically (its pickles are gone afterwards).

    Returns:
        The converted directory (``out``, or ``directory``). A directory already in the
        current format is left as it is (copied to ``out`` when given).

    Raises:
        ModelError: not a model directory, an unknown family or format, ``out`` exists,
            an old file is missing or unreadable, or the converted model does not draw
            the same rows as the old one (nothing is written then).
    """
    directory = Path(directory)
    meta = read_meta(directory)
    family = FAMILIES.get(meta.get("name"))
    if family is None:
        raise ModelError(f"{directory / META_FILE}: unknown model {meta.get('name')!r}")
    target = directory if out is None else Path(out)
    if out is not None and target.exists():
        raise ModelError(f"{target}: already exists; --out must name a new directory")
    if not is_legacy(directory):
        check_format(meta, directory)  # a newer synthgen's format: refused
        if target != directory:
            family.load(directory)  # the safe path: it must load before it is copied
            with atomic_path(target) as tmp:
                shutil.copytree(directory, tmp)
        log.info("%s is already in the safe format", directory)
        return target
    old = family.unfitted_from_meta(meta, directory)
    _read_legacy(old, directory)
    written = {META_FILE, *LEGACY_FILES[family.name]}
    with atomic_path(target) as tmp:
        old.save(tmp)
        record = {"name": meta["name"], FORMAT_KEY: FORMAT, **{k: v for k, v in meta.items() if k != "name"}}
        (tmp / META_FILE).write_text(json.dumps(record, indent=2, default=str))
        for entry in sorted(directory.iterdir()):  # e.g. params.json beside the model
            if entry.name in written or entry.name.startswith(".") or (tmp / entry.name).exists():
                continue
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, tmp / entry.name)
        if not _same_draw(old, family.load(tmp)):
            raise ModelError(f"{directory}: the converted model draws other rows than the old one; "
                             "nothing was written")
    log.info("upgraded %s -> %s (safe format: loading it runs no code from it)", directory, target)
    return target
