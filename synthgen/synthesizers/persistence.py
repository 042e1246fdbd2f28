"""What a saved model directory may hold, and how it is written and read without running code.

A model directory (format :data:`FORMAT`, recorded as ``"format"`` in its
:data:`~synthgen.synthesizers.base.META_FILE`) holds only:

* the meta record and the fitted transformers as JSON (:func:`write_json` /
  :func:`read_json`): JSON has no objects, so reading it runs nothing;
* weights as ``torch.save`` of plain containers - dicts, lists and tuples of tensors,
  numbers, strings, booleans and ``None`` (:func:`save_tensors`, which refuses anything
  else) - read back with ``torch.load(weights_only=True)`` (:func:`load_tensors`), whose
  unpickler resolves no global but tensor types, so a planted pickle payload (an object
  whose ``__reduce__`` calls ``os.system``) is refused before anything is called.

The one exception is the ctgan backend's ``ctgan.pt``: ctgan's own pickle of its whole
model object, read through an allow-list of its classes (see
:mod:`synthgen.synthesizers.ctgan_backend`).

Directories written by earlier synthgen versions (no ``format``: pickled ``.pt`` files,
``transformers.pkl``, ``preparer.pkl``) are refused by :func:`check_format` with
:func:`legacy_message`; ``synthgen upgrade-model`` (:mod:`synthgen.synthesizers.legacy`)
converts one the user trusts, once.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from synthgen.errors import ModelError

FORMAT = 2  # 1 (no "format" key): pickles, synthgen 0.1.0; 2: tensors + JSON
FORMAT_KEY = "format"

_GLOBAL = re.compile(r"GLOBAL (\S+)")


def legacy_message(directory: str | Path) -> str:
    """The refusal of a model directory saved by an older synthgen, with the conversion command."""
    return (f"{directory}: saved by an older synthgen as a pickle, which can run code when loaded; "
            f"if you trust it, convert it once with `synthgen upgrade-model --model {directory}`")


def check_format(meta: dict[str, Any], directory: str | Path) -> None:
    """Refuse a meta record of another format than :data:`FORMAT`.

    Raises:
        ModelError: no ``format`` (an older synthgen's pickles: :func:`legacy_message`), or
            an unknown one (a newer synthgen's).
    """
    found = meta.get(FORMAT_KEY)
    if found == FORMAT:
        return
    if found is None or found == 1:
        raise ModelError(legacy_message(directory))
    raise ModelError(f"{directory}: model format {found!r} is not one this synthgen reads ({FORMAT}); "
                     "it was saved by another synthgen version")


def check_plain(value: Any, where: str) -> None:
    """Check that ``value`` holds only what ``torch.load(weights_only=True)`` reads back
    without allow-listing: tensors, ``None``, booleans, numbers, strings and
    dicts/lists/tuples of them.

    Raises:
        TypeError: anything else (a numpy array, a dataclass ...), named with ``where``.
    """
    if value is None or isinstance(value, torch.Tensor) or type(value) in (bool, int, float, str):
        return  # exact types: a numpy float is a float subclass, but pickles as a numpy object
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            check_plain(key, f"{where} key")
            check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(f"{where}: a {type(value).__module__}.{type(value).__name__} is not a plain value; "
                    "convert it to a tensor, number, string or list before saving")


def save_tensors(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` a dict of plain values (see :func:`check_plain`) to ``path``."""
    check_plain(state, path.name)
    torch.save(state, path)


def unsafe_message(path: Path, exc: BaseException) -> str:
    """The refusal of a file that ``weights_only`` would not read (names the global it met)."""
    named = _GLOBAL.search(str(exc))
    what = f" (it names {named.group(1)})" if named else ""
    return (f"{path}: refused: it holds pickled Python objects{what}, which could run code when loaded; "
            "a synthgen model file holds only tensors and plain values")


def load_tensors(path: Path, family: str) -> dict[str, Any]:
    """Read a file written by :func:`save_tensors`, with ``torch.load(weights_only=True)``.

    Raises:
        ModelError: the file is missing, holds pickled objects (refused before any runs),
            or is not a torch file of a dict.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{path.parent}: incomplete {family} model ({path.name} missing)") from None
    except pickle.UnpicklingError as exc:
        raise ModelError(unsafe_message(path, exc)) from None
    except Exception as exc:  # a torn or foreign file: torch raises many kinds
        raise ModelError(f"{path}: corrupt or not a synthgen {family} file ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(state, dict):
        raise ModelError(f"{path}: corrupt (expected a dict of tensors, found a {type(state).__name__})")
    return state


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as JSON (non-finite floats as ``NaN``/``Infinity``, which :func:`read_json` reads)."""
    path.write_text(json.dumps(payload))


def read_json(path: Path, family: str) -> dict[str, Any]:
    """Read a JSON object written by :func:`write_json`.

    Raises:
        ModelError: the file is missing, not JSON, or not a JSON object.
    """
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path.parent}: incomplete {family} model ({path.name} missing)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: corrupt ({exc})") from None
    if not isinstance(payload, dict):
        raise ModelError(f"{path}: corrupt (expected a JSON object)")
    return payload
