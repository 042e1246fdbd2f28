"""The lineage of a pipeline run, as MLflow sees it: which data went in and came out.

Every tracked run logs four datasets (:func:`datasets`, called by the validate stage once
the verdict exists): the real source (``data.path``, context ``source``), the train split
(``training``), the holdout (``evaluation``) and the synthetic data (``output``), each with
its digest - the very strings of ``manifest.json`` (``source_data_hash``,
``splits.train.sha256``, ``splits.holdout.sha256``, ``synthetic_hash``: each the first 36
hex digits of the data's sha256, :func:`synthgen.io.data_digest`) - its path, a schema of
column names and kinds (image size, channels and class names for images) and its row
count. No value of the real data goes into MLflow this way.

:func:`registry_name` resolves ``tracking.registered_model: auto`` (the project's
params files) to a name derived from the data, so a model trained on a new table is not
registered under the demo's name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from synthgen.config import Params

AUTO = "auto"  # tracking.registered_model: a name derived from data.path


def data_name(path: str | Path) -> str:
    """A registry-safe name for a data source: its file stem or folder name, lower-case,
    other characters than letters, digits, ``_`` and ``-`` replaced by ``-``
    (``data/Loan Applications.csv`` -> ``loan-applications``)."""
    path = Path(path)
    stem = path.name if path.is_dir() or not path.suffix else path.stem
    return re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-_") or "synthgen-data"


def registry_name(params: Params) -> str | None:
    """``tracking.registered_model`` with ``auto`` resolved by :func:`data_name`; ``None``: not registered."""
    name = params.tracking.registered_model
    return data_name(params.data.path) if name == AUTO else name


def schema_summary(schema_file: Path) -> dict[str, Any]:
    """Names and kinds of the columns (tables), or size, channels and classes (images): no values."""
    raw = json.loads(schema_file.read_text())
    if raw.get("kind") == "image":
        return {key: raw.get(key) for key in ("kind", "image_size", "channels", "classes")}
    return {"kind": "table", "columns": [{"name": c["name"], "kind": c["kind"]} for c in raw.get("columns", [])]}


def datasets(params: Params, manifest: dict[str, Any], schema_file: Path, synthetic: Path) -> list[dict[str, Any]]:
    """The four datasets of a run (see the module docstring), from its manifest's hashes."""
    name = data_name(params.data.path)
    schema = schema_summary(schema_file)
    splits = manifest.get("splits") or {}
    train, holdout = splits.get("train") or {}, splits.get("holdout") or {}
    found = [
        {"name": name, "digest": manifest.get("source_data_hash"), "source": params.data.path,
         "rows": (train.get("rows") or 0) + (holdout.get("rows") or 0), "context": "source"},
        {"name": f"{name}-train", "digest": train.get("sha256"), "source": train.get("path"),
         "rows": train.get("rows") or 0, "context": "training"},
        {"name": f"{name}-holdout", "digest": holdout.get("sha256"), "source": holdout.get("path"),
         "rows": holdout.get("rows") or 0, "context": "evaluation"},
        {"name": f"{name}-synthetic", "digest": manifest.get("synthetic_hash"), "source": str(synthetic),
         "rows": manifest.get("rows") or 0, "context": "output"},
    ]
    return [{**d, "schema": schema} for d in found if d["digest"]]
