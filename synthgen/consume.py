"""Consuming synthgen's output: sampling a saved generator, loading a published dataset.

Two consumers, one module:

* a model user samples fresh rows from a generator, by local directory or MLflow URI
  (:func:`open_model`, :func:`parse_where`, :func:`sample_to_file`; the CLI's
  ``synthgen sample`` and the MLflow pyfunc wrapper share the request parsing here);
* a data user reads the validated synthetic dataset a pipeline run published, or the
  augmented training set of the augment stage (:func:`load_dataset`), which refuses data
  whose verdict failed and data whose bytes do not match the manifest's hash.

Example::

    import synthgen
    ds = synthgen.load_dataset("outputs/demo/published")
    ds.data.head(); ds.manifest["validation"]["passed"]  # -> True
    digits = synthgen.load_dataset("outputs/digits/published")  # an image run
    digits.images.shape, digits.labels[:5]  # (N, 8, 8, 1) uint8, class names
    train = synthgen.load_dataset("outputs/demo/augment")  # real + synthetic, .provenance per row

Conditions have one JSON-friendly form everywhere: ``{"col": value}`` for an exact
value and ``{"col": {"low": a, "high": b}}`` (inclusive) for a numeric range.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from synthgen.data.images import ImageSet, read_image_folder
from synthgen.errors import ConditionError, DataError, ModelError
from synthgen.io import atomic_path, file_hash

if TYPE_CHECKING:
    from synthgen.data.schema import TableSchema
    from synthgen.synthesizers.base import Synthesizer

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
DATASHEET = "DATASHEET.md"
DEFAULT_SYNTHETIC = "synthetic.parquet"  # manifests before the "synthetic" key named no file
URI_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")
TABLE_WRITERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
PYFUNC_ARTIFACT = "synthesizer"  # key of the synthesizer directory among a pyfunc model's artifacts


# -- conditions ----------------------------------------------------------------------
def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def normalize_conditions(conditions: Any) -> dict[str, Any] | None:
    """Conditions in their JSON form -> the form ``Synthesizer.sample`` takes.

    Args:
        conditions: ``None`` / NaN / ``""`` (no conditions), a JSON string, or a dict
            ``{col: value}`` where a value may be ``{"low": a, "high": b}`` or ``[a, b]``
            (a numeric range, inclusive).

    Returns:
        ``{col: value or (low, high)}``, or ``None`` when there are no conditions.

    Raises:
        ConditionError: not JSON, not a mapping, or a range without ``low``/``high``.
    """
    if _missing(conditions) or (isinstance(conditions, str) and not conditions.strip()):
        return None
    if isinstance(conditions, str):
        try:
            conditions = json.loads(conditions)
        except json.JSONDecodeError as exc:
            raise ConditionError(f"conditions: not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(conditions, Mapping):
        raise ConditionError(f"conditions: expected an object {{column: value}}, got {type(conditions).__name__}")
    out: dict[str, Any] = {}
    for column, value in conditions.items():
        if isinstance(value, Mapping):
            if set(value) != {"low", "high"}:
                raise ConditionError(f"condition on {column!r}: a range needs exactly 'low' and 'high', got {sorted(value)}")
            out[column] = (value["low"], value["high"])
        elif isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise ConditionError(f"condition on {column!r}: a range is [low, high], got {list(value)}")
            out[column] = (value[0], value[1])
        else:
            out[column] = value
    return out or None


def _number(column: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConditionError(f"--where {column}={text}: {text!r} is not a number") from None


def parse_where(items: Iterable[str], schema: TableSchema) -> dict[str, Any]:
    """``["species=Adelie", "bill_depth_mm=15..18"]`` -> typed conditions for ``schema``.

    Values are parsed against the column's kind: numbers (``a..b`` is an inclusive
    range), booleans (``true``/``false``/``1``/``0``/``yes``/``no``), categories
    (matched against the training levels by their text), datetimes (kept as text).

    Raises:
        ConditionError: no ``=``, unknown column, or a value of the wrong kind.
    """
    conditions: dict[str, Any] = {}
    for item in items:
        column, sep, text = item.partition("=")
        column, text = column.strip(), text.strip()
        if not sep or not column:
            raise ConditionError(f"--where {item!r}: expected column=value, e.g. species=Adelie")
        if column not in schema:
            raise ConditionError(f"--where {item!r}: unknown column {column!r}; columns: {schema.names}")
        spec = schema[column]
        if spec.kind in ("continuous", "integer"):
            if ".." in text:
                low, _, high = text.partition("..")
                conditions[column] = (_number(column, low), _number(column, high))
            else:
                conditions[column] = _number(column, text)
        elif spec.kind == "boolean":
            flags = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
            if text.lower() not in flags:
                raise ConditionError(f"--where {item!r}: {column!r} is boolean; use true or false")
            conditions[column] = flags[text.lower()]
        elif spec.kind == "categorical":
            levels = spec.categories or []
            match = [level for level in levels if str(level) == text]
            if not match:
                shown = ", ".join(map(str, levels[:10])) + (" ..." if len(levels) > 10 else "")
                raise ConditionError(f"--where {item!r}: {column!r} has no level {text!r}; levels: {shown}")
            conditions[column] = match[0]
        else:  # datetime, id, constant: the synthesizer accepts or refuses them itself
            conditions[column] = text
    return conditions


# -- sampling requests ------------------------------------------------------------------
@dataclass(frozen=True)
class SampleRequest:
    """One draw: ``rows`` rows, an optional ``seed`` and optional ``conditions``."""

    rows: int
    seed: int | None = None
    conditions: dict[str, Any] | None = None


def _integer(value: Any, what: str, row: int) -> int | None:
    if _missing(value):
        return None
    if isinstance(value, bool) or not float(value).is_integer():
        raise ConditionError(f"request row {row}: {what} must be an integer, got {value!r}")
    return int(value)


def requests_from_frame(frame: pd.DataFrame) -> list[SampleRequest]:
    """One :class:`SampleRequest` per row of a frame with columns ``rows`` (required),
    ``seed`` and ``conditions`` (optional; see :func:`normalize_conditions`).

    Raises:
        ConditionError: no ``rows`` column, an unknown column, or a bad value.
    """
    if "rows" not in frame.columns:
        raise ConditionError(f"request frame needs a 'rows' column; got {list(frame.columns)}")
    unknown = sorted(set(frame.columns) - {"rows", "seed", "conditions"})
    if unknown:
        raise ConditionError(f"request frame: unknown columns {unknown}; expected rows, seed, conditions")
    requests = []
    for i, record in enumerate(frame.to_dict("records")):
        rows = _integer(record["rows"], "rows", i)
        if rows is None or rows < 1:
            raise ConditionError(f"request row {i}: rows must be a positive integer, got {record['rows']!r}")
        requests.append(SampleRequest(rows, _integer(record.get("seed"), "seed", i),
                                      normalize_conditions(record.get("conditions"))))
    return requests


def sample_requests(model: Synthesizer, requests: Iterable[SampleRequest]) -> pd.DataFrame:
    """Draw every request from ``model`` and concatenate the frames in request order."""
    frames = [model.sample(r.rows, conditions=r.conditions, seed=r.seed) for r in requests]
    if not frames:
        raise ConditionError("no sampling requests given")
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


# -- models by directory or URI -------------------------------------------------------------
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
    import synthgen

    text = str(ref)
    if text.startswith(URI_SCHEMES):
        from synthgen.tracking.pyfunc import fetch_synthesizer

        return fetch_synthesizer(text, tracking_uri)
    path = Path(text)
    if not path.is_dir():
        hint = " (MLflow URIs start with models:/ or runs:/)" if ":" in text else ""
        raise ModelError(f"{text}: no such model directory{hint}")
    return synthgen.load(synthesizer_dir(path))


def synthesizer_dir(path: Path) -> Path:
    """The synthesizer directory in ``path``: ``path`` itself, or the artifact of a pyfunc model.

    Raises:
        ModelError: ``path`` holds neither a synthesizer nor a synthgen pyfunc model.
    """
    import yaml

    if (path / "synthesizer.json").is_file():
        return path
    mlmodel = path / "MLmodel"
    if mlmodel.is_file():
        flavor = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {}).get("python_function", {})
        artifact = (flavor.get("artifacts") or {}).get(PYFUNC_ARTIFACT) or {}
        if artifact.get("path") and (path / artifact["path"] / "synthesizer.json").is_file():
            return path / artifact["path"]
        raise ModelError(f"{path}: an MLflow model, but not a synthgen generator")
    raise ModelError(f"{path}: not a synthgen model directory (no synthesizer.json or MLmodel)")


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


# -- published datasets ------------------------------------------------------------------
@dataclass(frozen=True)
class SyntheticDataset:
    """A loaded synthetic (or augmented) dataset.

    Attributes:
        data: the table (tabular datasets), or an :class:`~synthgen.data.images.ImageSet`
            (image datasets: uint8 ``images`` N x H x W x C, ``labels`` indices into ``classes``).
        manifest: the run's manifest (generation facts plus the verdict); ``None`` only
            when loaded with ``allow_failed=True`` from a directory without one.
        datasheet: the text of ``DATASHEET.md``, or ``None`` when absent.
        path: the directory the dataset was read from.
        provenance: for an augmented training set, ``"real"`` or ``"synthetic"`` per row
            or image (in the order of ``data``); ``None`` for a synthetic dataset.
    """

    data: pd.DataFrame | ImageSet
    manifest: dict[str, Any] | None
    datasheet: str | None
    path: Path
    provenance: np.ndarray | None = None

    @property
    def augmented(self) -> bool:
        """True for the augment stage's output (real train split plus synthetic rows)."""
        return _is_augmented(self.manifest or {})

    @property
    def passed(self) -> bool:
        """A passing verdict is on record (for an augmented set: its generator's)."""
        return bool((_verdict(self.manifest or {}) or {}).get("passed"))

    @property
    def images(self) -> np.ndarray:
        """The uint8 images (N x H x W x C) of an image dataset."""
        return self._image_set().images

    @property
    def labels(self) -> np.ndarray:
        """The class name of every image of an image dataset."""
        data = self._image_set()
        return np.array(data.classes, dtype=object)[data.labels]

    def _image_set(self) -> ImageSet:
        if not isinstance(self.data, ImageSet):
            raise TypeError(f"{self.path}: a tabular dataset; its rows are in .data")
        return self.data


def _is_augmented(manifest: dict[str, Any]) -> bool:
    return manifest.get("dataset") == "augmented"


def _verdict(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The verdict that gates loading: the run's validation, or for an augmented set the
    validation of the generator that made its synthetic part (None: none on record)."""
    return manifest.get("generator_validation") if _is_augmented(manifest) else manifest.get("validation")


def _load_table(data_path: Path, manifest: dict[str, Any]) -> tuple[pd.DataFrame, np.ndarray | None]:
    frame = pd.read_parquet(data_path)
    column = manifest.get("provenance_column")
    return frame, (frame[column].to_numpy() if _is_augmented(manifest) and column in frame else None)


def _load_image_folder(data_path: Path, manifest: dict[str, Any]) -> tuple[ImageSet, np.ndarray | None]:
    import csv

    channels = (manifest.get("image_shape") or [0, 0, 1])[-1]
    images = read_image_folder(data_path, list(manifest.get("class_names") or manifest["classes"]), channels)
    if not _is_augmented(manifest):
        return images, None
    with open(data_path / "labels.csv", newline="") as fh:
        return images, np.array([row.get("source") for row in csv.DictReader(fh)], dtype=object)


# manifest "kind" -> reader of the data it names: (data, provenance or None)
LOADERS = {"tabular": _load_table, "image": _load_image_folder}


def load_dataset(path: str | Path, allow_failed: bool = False) -> SyntheticDataset:
    """Load the synthetic data of a pipeline run, or an augmented training set, with its manifest.

    Args:
        path: a ``published/`` directory, a run's ``output.dir``, its ``augment/``
            directory (the augmented training set), or a ``manifest.json``.
        allow_failed: also load data whose verdict failed or that has no manifest;
            default ``False`` (refuse them). An augmented set is refused when the
            validation of its generator failed; one whose generator was never
            validated loads with a warning (its ``benefit.json`` is its measure).

    Raises:
        DataError: no manifest, a failed verdict (unless ``allow_failed``), a missing
            data file, or data whose sha256 differs from the manifest's hash.
    """
    path = Path(path)
    directory = path.parent if path.is_file() else path
    manifest_path = path if path.is_file() else directory / MANIFEST
    if not directory.is_dir():
        raise DataError(f"{path}: no such dataset directory")
    datasheet = (directory / DATASHEET).read_text(encoding="utf-8") if (directory / DATASHEET).is_file() else None
    if not manifest_path.is_file():
        if not allow_failed:
            raise DataError(f"{directory}: no {MANIFEST}; unvalidated data is refused (allow_failed=True to load it)")
        data_path = directory / DEFAULT_SYNTHETIC
        if not data_path.is_file():
            raise DataError(f"{data_path}: synthetic data not found")
        log.warning("%s: no manifest; loading unvalidated data without a hash check", directory)
        return SyntheticDataset(pd.read_parquet(data_path), None, datasheet, directory)
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{manifest_path}: corrupt ({exc.msg})") from None
    augmented = _is_augmented(manifest)
    verdict = _verdict(manifest)
    whose = "its generator's validation" if augmented else "validation"
    if augmented and verdict is None:
        log.warning("%s: an augmented set whose generator was not validated; see its benefit.json", directory)
    elif not (verdict or {}).get("passed"):
        failed = (verdict or {}).get("failed_checks") or ["no verdict recorded"]
        if not allow_failed:
            raise DataError(f"{manifest_path}: {whose} failed ({', '.join(failed)}); "
                            "refusing the data (allow_failed=True to load it anyway)")
        log.warning("%s: loading data whose %s failed (%s)", directory, whose, ", ".join(failed))
    kind = manifest.get("kind", "tabular")
    loader = LOADERS.get(kind)
    if loader is None:
        raise DataError(f"{manifest_path}: datasets of kind {kind!r} cannot be loaded yet; known: {sorted(LOADERS)}")
    name_key, hash_key = ("augmented", "augmented_hash") if augmented else ("synthetic", "synthetic_hash")
    data_path = directory / manifest.get(name_key, DEFAULT_SYNTHETIC if kind == "tabular" else "synthetic")
    if not data_path.exists():
        raise DataError(f"{data_path}: data named by the manifest not found")
    expected = manifest.get(hash_key)
    if expected is None:
        raise DataError(f"{manifest_path}: records no {hash_key}; cannot verify {data_path.name}")
    actual = file_hash(data_path)
    if actual != expected:
        raise DataError(f"{data_path}: sha256 {actual[:12]}... does not match the manifest's "
                        f"{hash_key} {expected[:12]}...; the data changed after it was written")
    data, provenance = loader(data_path, manifest)
    return SyntheticDataset(data, manifest, datasheet, directory, provenance)
