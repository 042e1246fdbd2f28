"""Bundled datasets and source hashes: the ``data.path`` values read from a package's
bundled files (:data:`BUNDLED`), and :func:`source_hash`, the digest a run records for
its source data (a file, a folder, or a bundled dataset).
"""

from __future__ import annotations

from pathlib import Path

from synthgen.io import data_digest

DIGITS = "sklearn:digits"
# data.path values read from a package's bundled files -> (package of the data folder, file)
BUNDLED = {DIGITS: ("sklearn.datasets.data", "digits.csv.gz")}


def source_hash(path: str | Path) -> str | None:
    """:func:`synthgen.io.data_digest` of the source data (a file, a folder, or a bundled
    ``sklearn:`` dataset, whose digest is its packaged file's: :data:`BUNDLED`); None when absent."""
    if str(path).startswith("sklearn:"):
        from importlib.resources import files

        if str(path) in BUNDLED:
            package, name = BUNDLED[str(path)]
            return data_digest(Path(str(files(package) / name)))
    return data_digest(path) if Path(path).exists() else None
