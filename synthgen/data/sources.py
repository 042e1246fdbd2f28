"""Bundled datasets and source hashes: the ``data.path`` values read from a package's
bundled files (:data:`BUNDLED`), and :func:`source_hash`, the sha256 a run records for
its source data (a file, a folder, or a bundled dataset).
"""

from __future__ import annotations

from pathlib import Path

from synthgen.io import file_hash

DIGITS = "sklearn:digits"
# data.path values read from a package's bundled files -> (package of the data folder, file)
BUNDLED = {DIGITS: ("sklearn.datasets.data", "digits.csv.gz")}


def source_hash(path: str | Path) -> str | None:
    """sha256 of the source data (a file, a folder, or a bundled ``sklearn:`` dataset, whose
    hash is its packaged file's: :data:`BUNDLED`); None when absent."""
    if str(path).startswith("sklearn:"):
        from importlib.resources import files

        if str(path) in BUNDLED:
            package, name = BUNDLED[str(path)]
            return file_hash(Path(str(files(package) / name)))
    return file_hash(path) if Path(path).exists() else None
