"""Prefect task caching for the pipeline stages: a re-run with unchanged inputs is a cache hit.

A stage's output is valid when nothing it depends on changed: the params, the source data,
the files the earlier stages wrote, the library's code and the task's own source. And a
cache hit must still leave the stage's files on disk, so the cache key of a stage is

* ``digest`` = sha256 of (stage name, the whole params, the hash of ``data.path``, the
  *current* hashes of every file the earlier stages recorded as theirs, the hash of the
  ``synthgen`` package source) plus the task's source (Prefect's ``TASK_SOURCE``);
* used only while the stage's own recorded outputs are intact: after each run the task writes
  a stamp ``output.dir/.stages/<stage>.json`` with the digest and the sha256 of every file the
  stage created or changed. When a cached record exists but the stamp does not match (files
  deleted, overwritten by a CLI run with other params, ...), :class:`StageCache` returns no
  key: the stage runs again, rewrites its files and its stamp, and the next unchanged run is a
  hit again.

Results are persisted (``persist_result=True``) in Prefect's result storage
(``$PREFECT_HOME/storage`` unless ``PREFECT_LOCAL_STORAGE_PATH`` says otherwise); the
stamp is what ties a record to the files on disk. ``PREFECT_TASKS_REFRESH_CACHE=true`` forces
every stage to run (and overwrite its record).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from prefect.cache_policies import CachePolicy, TaskSource

from synthgen.config import Params
from synthgen.io import file_hash, params_hash, write_json

STAGES = ("ingest", "train", "generate", "validate")  # pipeline order: a stage depends on those before it
STAMPS = ".stages"  # folder under output.dir holding one stamp per stage


@functools.lru_cache(maxsize=1)
def code_hash() -> str:
    """sha256 of every ``.py`` file of the installed ``synthgen`` package (computed once)."""
    import synthgen

    root = Path(synthgen.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """``{relative path: (mtime_ns, size)}`` of every file under ``root`` except the stamps."""
    if not root.is_dir():
        return {}
    found = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith(f"{STAMPS}/"):
            stat = path.stat()
            found[rel] = (stat.st_mtime_ns, stat.st_size)
    return found


def _stamp_path(root: Path, stage: str) -> Path:
    return root / STAMPS / f"{stage}.json"


def read_stamp(root: Path, stage: str) -> dict[str, Any] | None:
    path = _stamp_path(root, stage)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _current_hash(path: Path) -> str | None:
    return file_hash(path) if path.is_file() else None


def stage_digest(stage: str, params: Params) -> str:
    """What the outputs of ``stage`` are a function of (see the module docstring)."""
    root = params.out
    source = Path(params.data.path)
    upstream = {}
    for earlier in STAGES[: STAGES.index(stage)]:
        stamp = read_stamp(root, earlier) or {"outputs": {}}
        upstream[earlier] = {rel: _current_hash(root / rel) for rel in sorted(stamp["outputs"])}
    return params_hash({
        "stage": stage,
        "params": params.to_dict(),
        "source": file_hash(source) if source.exists() else None,
        "upstream": upstream,
        "code": code_hash(),
    })


def outputs_intact(stage: str, params: Params, digest: str) -> bool:
    """True when the stamp of ``stage`` has ``digest`` and every file it lists is unchanged."""
    stamp = read_stamp(params.out, stage)
    if stamp is None or stamp.get("digest") != digest:
        return False
    return all(_current_hash(params.out / rel) == sha for rel, sha in stamp["outputs"].items())


def write_stamp(stage: str, params: Params, digest: str, before: dict[str, tuple[int, int]]) -> None:
    """Record the files ``stage`` created or changed since the ``before`` snapshot."""
    after = snapshot(params.out)
    changed = sorted(rel for rel, stat in after.items() if before.get(rel) != stat)
    write_json(_stamp_path(params.out, stage), {
        "stage": stage, "digest": digest,
        "outputs": {rel: file_hash(params.out / rel) for rel in changed},
    })


def run_stamped(stage: str, function: Callable[[Params], dict[str, Any]], params: Params) -> dict[str, Any]:
    """Run a stage function and write its stamp (the body of every cached stage task)."""
    digest = stage_digest(stage, params)
    before = snapshot(params.out)
    result = function(params)
    write_stamp(stage, params, digest, before)
    return result


@dataclass
class StageCache(CachePolicy):
    """Cache key of a stage task: :func:`stage_digest` + the task source, only while outputs are intact.

    The task must take the validated :class:`~synthgen.config.Params` as its ``params``
    argument and be named after its stage (``ingest``, ``train``, ``generate``, ``validate``).
    """

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        params = inputs.get("params")
        stage = task_ctx.task.name
        if not isinstance(params, Params) or stage not in STAGES:
            return None
        digest = stage_digest(stage, params)
        source = TaskSource().compute_key(task_ctx, inputs, flow_parameters) or ""
        key = f"synthgen-{stage}-" + hashlib.sha256(f"{digest}:{source}".encode()).hexdigest()[:32]
        if outputs_intact(stage, params, digest):
            return key
        # a record of this key would be a hit with missing or foreign files on disk: run again
        return None if task_ctx.result_store.exists(key) else key
