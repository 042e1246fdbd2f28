"""Published datasets: :class:`SyntheticDataset` and :func:`load_dataset`, which reads the
synthetic data of a pipeline run (tabular or image) or the augment stage's training set,
refusing data whose verdict failed and data whose bytes do not match the manifest's hash.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthgen.data.images import ImageSet, read_image_folder
from synthgen.errors import DataError
from synthgen.io import digest_matches, file_hash

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
DATASHEET = "DATASHEET.md"
DEFAULT_SYNTHETIC = "synthetic.parquet"  # manifests before the "synthetic" key named no file


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


def _load_table(data_path: Path | io.BytesIO, manifest: dict[str, Any]) -> tuple[pd.DataFrame, np.ndarray | None]:
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
    # a file is hashed and parsed from the same bytes; a folder is hashed again after reading:
    # a publication swapped in meanwhile is never returned under this manifest
    raw = data_path.read_bytes() if data_path.is_file() else None
    actual = hashlib.sha256(raw).hexdigest() if raw is not None else file_hash(data_path)
    if not digest_matches(expected, actual):
        raise DataError(f"{data_path}: sha256 {actual[:12]}... does not match the manifest's "
                        f"{hash_key} {expected[:12]}...; the data changed after it was written")
    data, provenance = loader(io.BytesIO(raw) if raw is not None else data_path, manifest)
    if raw is None and file_hash(data_path) != actual:
        raise DataError(f"{data_path}: changed while it was read (a new publication?); load it again")
    return SyntheticDataset(data, manifest, datasheet, directory, provenance)
