"""Sampling a saved generator, by local directory or MLflow URI: :func:`open_model`,
:func:`sample_to_file` (tables, CSV or Parquet) and :func:`sample_images_to_folder`
(an image generator's ImageFolder); the engine of ``synthgen sample``.

Two safety rules hold here:

* only a generator whose synthetic data passed the trust gate is opened by default (the
  verdict is looked up by :mod:`synthgen.tracking.gate`); ``allow_unvalidated=True``
  (``--allow-unvalidated``) opens a failed or never-validated one, with a warning;
* output never replaces what synthgen did not write: an existing output file must be a
  regular file, and an existing output directory must carry the :data:`OUTPUT_MARKER`
  file that synthgen puts in every folder it writes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from synthgen.tracking.artifacts import synthesizer_dir
from synthgen.tracking.gate import CLI_HINT, directory_verdict, require_servable
from synthgen.synthesizers.requests import parse_where
from synthgen.errors import ConditionError, DataError, ModelError
from synthgen.io import atomic_path
from synthgen.version import __version__

if TYPE_CHECKING:
    from synthgen.synthesizers.base import Synthesizer

log = logging.getLogger(__name__)

URI_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")
TABLE_WRITERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
OUTPUT_MARKER = ".synthgen-output"  # in every directory `synthgen sample` writes; nothing else is replaced


def open_model(ref: str | Path, tracking_uri: str | None = None, allow_unvalidated: bool = False,
               hint: str = CLI_HINT) -> Synthesizer:
    """A fitted synthesizer from a local model directory or an MLflow model URI, served
    only when a passing verdict on its synthetic data is on record.

    The verdict of a model directory is the run's ``manifest.json`` beside it (``DIR/..``,
    matched by the directory's hash), of a downloaded pyfunc directory its logged
    ``verdict.json``, of a URI the registry's ``synthgen.verdict`` tag and the logged
    verdict (see :mod:`synthgen.tracking.gate`).

    Args:
        ref: a directory written by ``Synthesizer.save`` (e.g. ``outputs/demo/model``),
            a downloaded pyfunc directory, or ``models:/NAME@ALIAS``,
            ``models:/NAME/VERSION``, ``runs:/RUN_ID/model``.
        tracking_uri: the MLflow store for URIs; default ``None`` (``MLFLOW_TRACKING_URI``).
        allow_unvalidated: open a generator whose verdict failed or is missing, with a
            warning; default ``False`` (refuse it).
        hint: how the caller overrides the gate, for the refusal; default the CLI flag.

    Raises:
        ModelError: not a model directory, an unreachable store, an unknown URI, or a
            failed or missing verdict (unless ``allow_unvalidated``).
    """
    from synthgen.synthesizers import load as load_model

    text = str(ref)
    if text.startswith(URI_SCHEMES):
        from synthgen.tracking.pyfunc import fetch_synthesizer

        return fetch_synthesizer(text, tracking_uri, allow_unvalidated=allow_unvalidated, hint=hint)
    path = Path(text)
    if not path.is_dir():
        uri_hint = " (MLflow URIs start with models:/ or runs:/)" if ":" in text else ""
        raise ModelError(f"{text}: no such model directory{uri_hint}")
    directory = synthesizer_dir(path)
    require_servable(text, directory_verdict(path), allow_unvalidated, hint)
    return load_model(directory)


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
    """Fail before sampling when ``out`` has an unknown extension, cannot be written, or
    exists as anything but a regular file (a directory, a symbolic link, a device)."""
    import os
    import stat

    out = Path(out)
    if out.suffix.lower() not in TABLE_WRITERS:
        raise DataError(f"{out}: unknown output format; use one of {sorted(TABLE_WRITERS)}")
    if out.is_dir() and not out.is_symlink():
        raise DataError(f"{out}: is a directory; synthgen replaces only a regular file")
    if os.path.lexists(out) and not stat.S_ISREG(os.lstat(out).st_mode):
        raise DataError(f"{out}: exists and is not a regular file (a link, device or pipe); synthgen replaces "
                        "only a regular file")
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
    allow_unvalidated: bool = False,
) -> pd.DataFrame:
    """Load a model, draw ``rows`` rows meeting ``where`` and write them to ``out``.

    Only a generator whose data passed the trust gate is sampled unless
    ``allow_unvalidated`` (default ``False``; see :func:`open_model`). Everything that can
    be checked is checked before the model is loaded; the output is written atomically,
    so a failure leaves no file behind, and replaces only a regular file or a folder
    synthgen wrote (:func:`check_output_dir`). An image generator
    writes an ImageFolder instead (:func:`sample_images_to_folder`) and returns its
    ``labels.csv`` as a frame.
    """
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ConditionError(f"--rows must be a positive integer, got {rows}")
    if Path(out).suffix:  # a table file: checked before the model is loaded
        check_writable(out)
    else:  # a folder (an image generator's): checked before the model is loaded too
        check_output_dir(out)
    model = open_model(ref, tracking_uri, allow_unvalidated=allow_unvalidated)
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

    ``where`` takes one ``label=CLASS``. ``out`` must be a new directory, or one this
    function wrote before (it carries :data:`OUTPUT_MARKER`); it is replaced atomically,
    marker included.

    Raises:
        ConditionError: a ``where`` other than ``label=CLASS``, or an unknown class.
        DataError: ``out`` looks like a file, or is a directory synthgen did not write.
    """
    from synthgen.data.images import write_image_folder

    out = Path(out)
    if out.suffix:
        raise DataError(f"{out}: an image generator writes a folder of PNGs; give a directory without an extension")
    check_output_dir(out)
    conditions: dict[str, Any] = {}
    for item in where:
        key, sep, value = item.partition("=")
        if not sep or key.strip() != "label" or conditions:
            raise ConditionError(f"--where {item!r}: an image generator takes one label=CLASS; "
                                 f"classes: {', '.join(model.classes_)}")
        conditions["label"] = value.strip()
    images, labels = model.sample(n, conditions=conditions or None, seed=seed)
    try:
        with atomic_path(out) as tmp:  # the folder and its marker appear together
            rows = write_image_folder(tmp, images, labels, model.classes_)
            (tmp / OUTPUT_MARKER).write_text(f"written by synthgen {__version__} sample; "
                                             "synthgen may replace this directory\n")
    except OSError as exc:
        raise DataError(f"{out}: cannot write ({exc.strerror or exc})") from None
    log.info("sample: %d images -> %s", len(rows), out)
    return pd.DataFrame(rows)


def check_output_dir(out: str | Path) -> None:
    """Fail unless ``out`` is new or a directory synthgen wrote (it has :data:`OUTPUT_MARKER`).

    Raises:
        DataError: ``out`` is a file, a symbolic link, or a directory without the marker
            (however much it looks like synthgen output, e.g. with a ``labels.csv``).
    """
    import os

    out = Path(out)
    if not os.path.lexists(out):
        return
    if out.is_symlink() or not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory synthgen wrote; choose a new directory")
    if not (out / OUTPUT_MARKER).is_file():
        raise DataError(f"{out}: exists and synthgen did not write it (no {OUTPUT_MARKER} marker); "
                        "synthgen replaces only its own output folders, so choose a new directory")
