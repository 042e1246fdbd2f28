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

Memory: a table draw larger than one sampling chunk
(:data:`~synthgen.synthesizers.base.SAMPLE_CHUNK` rows) is written as it is drawn, a
chunk at a time (a Parquet row group or a block of CSV lines per chunk;
:func:`write_sample`), so the file never needs the whole frame; only the frame returned
(``keep=True``, the default) holds every row.
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


def _stable_dtypes(part: pd.DataFrame, model: Any) -> pd.DataFrame:
    """A chunk with the dtypes every chunk shares: integer and boolean columns that may be
    missing (``missing_rate > 0``) as nullable ``Int64`` / ``boolean``, whether or not this
    chunk happens to hold a missing value."""
    for spec in model.schema.columns:
        if spec.missing_rate > 0 and spec.name in part:
            if spec.dtype.startswith(("int", "uint")):
                part[spec.name] = part[spec.name].astype("Int64")
            elif spec.dtype == "bool":
                part[spec.name] = part[spec.name].astype("boolean")
    return part


def write_sample(model: Synthesizer, rows: int, out: str | Path, conditions: dict[str, Any] | None = None,
                 seed: int | None = None, keep: bool = True) -> pd.DataFrame:
    """Draw ``rows`` rows from a table ``model`` into ``out`` (CSV or Parquet, atomically).

    A draw of one sampling chunk is sampled and written whole (:func:`write_table`); a
    larger one is written chunk by chunk as :meth:`~synthgen.synthesizers.base.Synthesizer.iter_sample`
    yields it (Parquet: one row group per chunk with ``pyarrow``'s ``ParquetWriter``;
    CSV: the header once, then each chunk's lines), with integer and boolean columns that
    may be missing as nullable types in every chunk. The rows are those of
    ``model.sample(rows, conditions, seed)``.

    Args:
        model: a fitted table synthesizer.
        rows: rows to draw (at least 1).
        out: the ``.csv`` / ``.parquet`` / ``.pq`` file.
        conditions: typed conditions (:func:`parse_where`); default none.
        seed: seed of the draw; default fresh randomness.
        keep: return every row (default ``True``); ``False`` holds one chunk at a time and
            returns the columns only (zero rows; ``frame.attrs["rows"]`` is the count).

    Raises:
        DataError: an unknown extension or a location that cannot be written.
        ConditionError: a bad row count or condition (nothing is written).
    """
    out = Path(out)
    kind = TABLE_WRITERS.get(out.suffix.lower())
    if kind is None:
        raise DataError(f"{out}: unknown output format; use one of {sorted(TABLE_WRITERS)}")
    chunks = model.iter_sample(rows, conditions=conditions, seed=seed)  # checks rows before anything is written
    if rows <= model.sample_chunk:  # one chunk: sampled and written whole
        frame = next(chunks)
        write_table(frame, out)
        frame = frame if keep else frame.iloc[:0]
    else:
        kept, written = [], 0
        try:
            with atomic_path(out) as tmp:
                writer = None
                try:
                    for part in chunks:
                        part = _stable_dtypes(part, model)
                        if kind == "csv":
                            part.to_csv(tmp, mode="a" if written else "w", header=not written, index=False)
                        else:
                            writer = _write_row_group(writer, tmp, part)
                        written += len(part)
                        if keep or not kept:  # keep=False: the first chunk's columns only (a copy, not a view)
                            kept.append(part if keep else part.iloc[:0].copy())
                finally:
                    if writer is not None:
                        writer.close()
        except OSError as exc:
            raise DataError(f"{out}: cannot write ({exc.strerror or exc})") from None
        frame = pd.concat(kept, ignore_index=True) if keep else kept[0]
    frame.attrs["rows"] = rows
    return frame


def _write_row_group(writer: Any, path: Path, part: pd.DataFrame) -> Any:
    """Append ``part`` to the Parquet file at ``path`` (the writer is opened by the first
    chunk, columns no chunk could type - all missing - as text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if writer is None:
        table = pa.Table.from_pandas(part, preserve_index=False)
        schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema],
                           metadata=table.schema.metadata)
        writer = pq.ParquetWriter(path, schema)
        writer.write_table(table.cast(schema))
        return writer
    writer.write_table(pa.Table.from_pandas(part, schema=writer.schema, preserve_index=False))
    return writer


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
    keep: bool = True,
) -> pd.DataFrame:
    """Load a model, draw ``rows`` rows meeting ``where`` and write them to ``out``.

    Rows are written chunk by chunk as they are drawn (:func:`write_sample`); with
    ``keep=False`` (default ``True``) the returned frame holds the columns only and
    ``frame.attrs["rows"]`` the count, so no more than one chunk is ever held.

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
    frame = write_sample(model, rows, out, conditions or None, seed, keep=keep)
    log.info("sample: %d rows -> %s", rows, out)
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
