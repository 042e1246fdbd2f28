"""The serving gate: a generator is served only when a passing verdict on its synthetic
data is on record, unless the caller explicitly allows an unvalidated one.

Where a verdict is found (no MLflow import here, so :mod:`synthgen.consume` and
:func:`synthgen.load` use it without loading MLflow):

* a model directory written by the train stage (``output.dir/model``): the run's
  ``manifest.json`` beside it (``DIR/../manifest.json``), only when its ``model_hash``
  equals :func:`synthgen.io.file_hash` of the directory (a retrained model is not
  covered by the verdict on the previous one);
* a pyfunc model directory (downloaded from MLflow, or loaded by the pyfunc itself): its
  logged ``verdict.json`` (artifact key :data:`VERDICT_ARTIFACT`), written when the
  validate stage logged and registered it, again matched by model hash;
* a registry version: its tags ``synthgen.verdict`` (``passed`` / ``rejected``) and
  ``synthgen.failed_checks`` (:func:`verdict_from_tags`; read in
  :mod:`synthgen.tracking.pyfunc`).

:func:`require_servable` turns a verdict into the refusal (a :class:`~synthgen.errors.ModelError`,
so the CLI prints one line and exits 2) or, when allowed, a warning.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthgen.errors import ModelError
from synthgen.io import file_hash
from synthgen.tracking.artifacts import synthesizer_dir

log = logging.getLogger(__name__)

VERDICT_ARTIFACT = "verdict"  # key of verdict.json among a pyfunc model's artifacts
VERDICT_FILE = "verdict.json"
VERDICT_TAG = "synthgen.verdict"  # on registry versions (and runs): "passed" or "rejected"
FAILED_TAG = "synthgen.failed_checks"  # comma-separated names of the failed checks
MANIFEST = "manifest.json"

#: How each surface tells its user to override the gate.
CLI_HINT = "pass --allow-unvalidated to sample anyway"
API_HINT = "pass allow_unvalidated=True to load it anyway"
REQUEST_HINT = "add allow_unvalidated=True to the request (a column, or the predict params) to sample anyway"


@dataclass(frozen=True)
class Verdict:
    """The verdict on record for one generator.

    Attributes:
        passed: ``True`` / ``False``; ``None`` when no verdict is on record.
        failed_checks: names of the failed checks (empty when passed or unknown).
        note: why no verdict was found (shown in the refusal); default ``""``.
    """

    passed: bool | None
    failed_checks: tuple[str, ...] = ()
    note: str = ""

    @property
    def label(self) -> str:
        """``"passed"``, ``"rejected"`` or ``"unknown"``."""
        return {True: "passed", False: "rejected", None: "unknown"}[self.passed]


UNKNOWN = Verdict(None)


def verdict_record(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The ``verdict.json`` logged with a generator, from a run's manifest: passed,
    failed checks, key metrics, the model and synthetic-data hashes, the MLflow run."""
    validation = manifest.get("validation") or {}
    return {
        "passed": bool(validation.get("passed")),
        "failed_checks": list(validation.get("failed_checks") or []),
        "key_metrics": dict(validation.get("key_metrics") or {}),
        "model_hash": manifest.get("model_hash"),
        "synthetic_hash": manifest.get("synthetic_hash"),
        "mlflow_run_id": manifest.get("mlflow_run_id"),
        "synthgen_version": manifest.get("synthgen_version"),
    }


def verdict_tags(record: Mapping[str, Any]) -> dict[str, str]:
    """The registry tags of a :func:`verdict_record`."""
    return {VERDICT_TAG: "passed" if record.get("passed") else "rejected",
            FAILED_TAG: ",".join(record.get("failed_checks") or [])}


def verdict_from_tags(tags: Mapping[str, str]) -> Verdict | None:
    """A verdict from registry (or run) tags; ``None`` when they record none."""
    value = tags.get(VERDICT_TAG)
    if value not in ("passed", "rejected"):
        return None
    failed = tuple(name for name in (tags.get(FAILED_TAG) or "").split(",") if name)
    return Verdict(value == "passed", () if value == "passed" else failed)


def combine(*verdicts: Verdict | None) -> Verdict:
    """The strictest of the verdicts on record: any rejection rejects; a pass needs at
    least one recorded pass; nothing on record is :data:`UNKNOWN` (with the first note)."""
    found = [v for v in verdicts if v is not None and v.passed is not None]
    rejected = [v for v in found if v.passed is False]
    if rejected:
        return Verdict(False, tuple(dict.fromkeys(n for v in rejected for n in v.failed_checks)))
    if found:
        return Verdict(True)
    notes = [v.note for v in verdicts if v is not None and v.note]
    return Verdict(None, note=notes[0] if notes else "")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def logged_verdict(path: str | Path | None, model_dir: str | Path | None = None) -> Verdict:
    """The verdict in a logged ``verdict.json``; :data:`UNKNOWN` when absent or unreadable,
    or when ``model_dir`` is given and its hash differs from the one recorded."""
    if path is None or not Path(path).is_file():
        return Verdict(None, note="no verdict.json logged with it")
    record = _read_json(Path(path))
    if record is None or not isinstance(record.get("passed"), bool):
        return Verdict(None, note=f"{VERDICT_FILE} unreadable")
    if model_dir is not None and record.get("model_hash") and record["model_hash"] != file_hash(model_dir):
        return Verdict(None, note=f"its {VERDICT_FILE} is for another model")
    return Verdict(record["passed"], () if record["passed"] else tuple(record.get("failed_checks") or ()))


def pyfunc_verdict_path(path: Path) -> Path | None:
    """Where the ``verdict.json`` artifact of the pyfunc model directory ``path`` is, or None."""
    import yaml

    mlmodel = path / "MLmodel"
    if not mlmodel.is_file():
        return None
    flavor = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {}).get("python_function", {})
    artifact = (flavor.get("artifacts") or {}).get(VERDICT_ARTIFACT) or {}
    return path / artifact["path"] if artifact.get("path") else None


def directory_verdict(path: str | Path) -> Verdict:
    """The verdict on the model in the local directory ``path``.

    A synthesizer directory: the run's ``manifest.json`` beside it, when its
    ``model_hash`` matches the directory. A pyfunc model directory: its logged
    ``verdict.json``. Anything else: :data:`UNKNOWN` with a note saying why.

    Raises:
        ModelError: ``path`` is not a model directory.
    """
    path = Path(path)
    model_dir = synthesizer_dir(path)
    if model_dir != path:  # a pyfunc model directory
        return logged_verdict(pyfunc_verdict_path(path), model_dir)
    manifest_path = path.resolve().parent / MANIFEST
    if not manifest_path.is_file():
        return Verdict(None, note=f"no {MANIFEST} beside it")
    manifest = _read_json(manifest_path)
    if manifest is None:
        return Verdict(None, note=f"{manifest_path} unreadable")
    if manifest.get("model_hash") != file_hash(path):
        return Verdict(None, note=f"{manifest_path} records another model (retrained since?)")
    validation = manifest.get("validation")
    if not isinstance(validation, dict) or not isinstance(validation.get("passed"), bool):
        return Verdict(None, note=f"{manifest_path} records no validation")
    passed = validation["passed"]
    return Verdict(passed, () if passed else tuple(validation.get("failed_checks") or ()))


def require_servable(ref: str, verdict: Verdict, allow_unvalidated: bool = False, hint: str = CLI_HINT) -> None:
    """Refuse a generator whose verdict did not pass, unless ``allow_unvalidated``.

    Args:
        ref: how the user named the model (directory, URI), first in the message.
        verdict: what :func:`directory_verdict` or the registry found.
        allow_unvalidated: serve anyway, with a warning; default ``False``.
        hint: how this surface overrides the gate; default :data:`CLI_HINT`.

    Raises:
        ModelError: ``"<ref>: its synthetic data failed the trust gate (<checks>); <hint>"``
            or ``"<ref>: no verdict on record for this model (never validated); <hint>"``.
    """
    if verdict.passed:
        return
    if verdict.passed is False:
        reason = f"its synthetic data failed the trust gate ({', '.join(verdict.failed_checks) or 'see its validation'})"
    else:
        reason = "no verdict on record for this model (never validated" + (f": {verdict.note}" if verdict.note else "") + ")"
    if not allow_unvalidated:
        raise ModelError(f"{ref}: {reason}; {hint}")
    log.warning("%s: %s; served because unvalidated generators were allowed", ref, reason)

