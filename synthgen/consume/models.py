"""Sampling a saved generator, by local directory or MLflow URI: :func:`open_model`,
:func:`sample_to_file` (tables, CSV or Parquet) and :func:`sample_images_to_folder`
(an image generator's ImageFolder); the engine of ``synthgen sample``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from synthgen.tracking.artifacts import synthesizer_dir
from synthgen.synthesizers.requests import parse_where
from synthgen.errors import ConditionError, DataError, ModelError
from synthgen.io import atomic_path

if TYPE_CHECKING:
    from synthgen.synthesizers.base import Synthesizer

log = logging.getLogger(__name__)

URI_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")
TABLE_WRITERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def open_model(ref: str | Path, tracking_uri: str | None = None) -> Synthesizer:
    """A fitted synthesizer from a local model directory or an MLflow model URI.

    Args:
        ref: a directory written by ``Synthesizer.save`` (e.g. ``outputs/demo/model``),
            a downloaded pyfunc directory, or ``models:/NAME@ALIAS``,
            ``models:/NAME/VERSION``, ``runs:/RUN_ID/model``.
        tracking_uri: the MLflow store for URIs; default ``None`` (``MLFLOW_TRACKING_URI``).

    Raises:
        ModelError: not a model directory, an unreachable store or an unknown URI.
    """
    from synthgen.synthesizers import load as load_model

    text = str(ref)
    if text.startswith(URI_SCHEMES):
        from synthgen.tracking.pyfunc import fetch_synthesizer

        return fetch_synthesizer(text, tracking_uri)
    path = Path(text)
    if not path.is_dir():
        hint = " (MLflow URIs start with models:/ or runs:/)" if ":" in text else ""
        raise ModelError(f"{text}: no such model directory{hint}")
    return load_model(synthesizer_dir(path))


def write_table(frame: pd.DataFrame, out: str | Path) -> Path:
    """Write ``frame`` as CSV or Parquet (by ``out``'s extension), atomically.

    Raises:
        DataError: an unknown extension or a location that cannot be written.
    """
    out = Path(out)
    kind = TABLE_WRITERS.get(out.suffix.lower())
    if kind is None:
        raise DataError(f"{out}: unknown output format; use one of {sorted(TABLE_WRITERS)}")
    try:
        with atomic_path(out) as tmp:
            if kind == "csv":
                frame.to_csv(tmp, index=False)
            else:
                frame.to_parquet(tmp, index=False)
    except OSError as exc:
        raise DataError(f"{out}: cannot write ({exc.strerror or exc})") from None
    return out


def check_writable(out: str | Path) -> None:
    """Fail before sampling when ``out`` has an unknown extension or cannot be written."""
    import os

    out = Path(out)
    if out.suffix.lower() not in TABLE_WRITERS:
        raise DataError(f"{out}: unknown output format; use one of {sorted(TABLE_WRITERS)}")
    if out.is_dir():
        raise DataError(f"{out}: is a directory")
    parent = next((p for p in [out.parent, *out.parent.parents] if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"{out}: cannot write into {parent}")


def sample_to_file(
    ref: str | Path,
    rows: int,
    out: str | Path,
    where: Iterable[str] = (),
    seed: int | None = None,
    tracking_uri: str | None = None,
) -> pd.DataFrame:
    """Load a model, draw ``rows`` rows meeting ``where`` and write them to ``out``.

    Everything that can be checked is checked before the model is loaded; the output
    is written atomically, so a failure leaves no file behind. An image generator
    writes an ImageFolder instead (:func:`sample_images_to_folder`) and returns its
    ``labels.csv`` as a frame.
    """
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ConditionError(f"--rows must be a positive integer, got {rows}")
    if Path(out).suffix:  # a table file: checked before the model is loaded
        check_writable(out)
    model = open_model(ref, tracking_uri)
    if getattr(model, "name", None) == "image_cgan":
        return sample_images_to_folder(model, rows, out, where, seed)
    check_writable(out)
    conditions = parse_where(where, model.schema)
    frame = model.sample(rows, conditions=conditions or None, seed=seed)
    write_table(frame, out)
    log.info("sample: %d rows -> %s", len(frame), out)
    return frame


def sample_images_to_folder(model: Any, n: int, out: str | Path, where: Iterable[str] = (),
                            seed: int | None = None) -> pd.DataFrame:
    """Draw ``n`` images into the ImageFolder ``out`` (``<class>/00001.png`` + ``labels.csv``).

    ``where`` takes one ``label=CLASS``. ``out`` must be a new or empty directory, or
    one written by synthgen before (it has a ``labels.csv``); it is replaced atomically.

    Raises:
        ConditionError: a ``where`` other than ``label=CLASS``, or an unknown class.
        DataError: ``out`` looks like a file, or is a directory synthgen did not write.
    """
    from synthgen.data.images import write_image_folder

    out = Path(out)
    if out.suffix:
        raise DataError(f"{out}: an image generator writes a folder of PNGs; give a directory without an extension")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "labels.csv").is_file())):
        raise DataError(f"{out}: exists and is not an image folder written by synthgen; choose a new directory")
    conditions: dict[str, Any] = {}
    for item in where:
        key, sep, value = item.partition("=")
        if not sep or key.strip() != "label" or conditions:
            raise ConditionError(f"--where {item!r}: an image generator takes one label=CLASS; "
                                 f"classes: {', '.join(model.classes_)}")
        conditions["label"] = value.strip()
    images, labels = model.sample(n, conditions=conditions or None, seed=seed)
    rows = write_image_folder(out, images, labels, model.classes_)
    log.info("sample: %d images -> %s", len(rows), out)
    return pd.DataFrame(rows)
