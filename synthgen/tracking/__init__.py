"""The tracking layer: the only package of the library that touches MLflow.

Stages talk to a :class:`Tracker`; training reaches it through :class:`TrackingCallback`.
Runs are addressed by id through ``MlflowClient`` (never the thread-local "active run"),
so the same code works from the CLI, from DVC stages in separate processes and from
Prefect tasks on worker threads. ``tracking.uri: null`` gives a :class:`NullTracker`.
:mod:`synthgen.tracking.pyfunc` wraps a saved synthesizer as an MLflow pyfunc model
(logged with its verdict once the validate stage has one, registered under
``tracking.registered_model`` and aliased); :mod:`synthgen.tracking.gate` refuses to
serve a generator whose verdict failed or is missing. Sweeps nest each point's
run under a parent run through the ``mlflow.parentRunId`` tag (``tracking.parent_run``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from synthgen.errors import TrackingError
from synthgen.tracking.artifacts import quiet_mlflow
from synthgen.training.callbacks import Callback

log = logging.getLogger(__name__)



class NullTracker:
    """Tracking switched off: every call is a no-op."""

    run_id: str | None = None
    uri: str | None = None

    def start(self, run_name: str, tags: dict[str, str] | None = None) -> str | None:
        return None

    def resume(self, run_id: str | None) -> None:
        return None

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def end(self, status: str = "FINISHED") -> None: ...

    def callback(self) -> Callback:
        return Callback()

    def log_generator(self, model_dir: str | Path, registered_model: str | None = None,
                      alias: str | None = None, verdict: dict[str, Any] | None = None) -> dict[str, Any]:
        return {}

    def set_model_alias(self, name: str, version: str, alias: str) -> None: ...

    def tag_run(self, run_id: str, tags: dict[str, str]) -> None: ...

    def child_runs(self, parent_id: str | None = None) -> list[dict[str, Any]]:
        return []


class MlflowTracker(NullTracker):
    """MLflow tracking by run id.

    Args:
        uri: tracking URI (``sqlite:///mlflow.db`` by default in params; an
            ``http://`` team server works the same).
        experiment: experiment name, created when missing.
    """

    def __init__(self, uri: str, experiment: str):
        self.uri = uri
        self.experiment = experiment
        self.run_id = None
        self._client = None

    @property
    def client(self):
        if self._client is None:
            quiet_mlflow()
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def _experiment_id(self) -> str:
        try:
            found = self.client.get_experiment_by_name(self.experiment)
            if found is not None:
                return found.experiment_id
            return self.client.create_experiment(self.experiment)
        except Exception as exc:  # noqa: BLE001 - any failure here means "unreachable"
            raise TrackingError(
                f"tracking.uri {self.uri!r}: cannot reach the MLflow store "
                f"({str(exc).splitlines()[0][:200]})"
            ) from None

    def check(self) -> None:
        """Fail fast, before any training, when the store cannot be reached."""
        self._experiment_id()

    def start(self, run_name: str, tags: dict[str, str] | None = None) -> str:
        run = self.client.create_run(self._experiment_id(), run_name=run_name, tags=tags or {})
        self.run_id = run.info.run_id
        return self.run_id

    def resume(self, run_id: str | None) -> None:
        """Continue logging into an existing run (a later stage of the same pipeline run)."""
        if run_id is None:
            return
        self._experiment_id()
        self.run_id = run_id
        self.client.update_run(run_id, status="RUNNING")

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step or 0)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path or path.name)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status=status)

    def callback(self) -> Callback:
        return TrackingCallback(self)

    def log_generator(self, model_dir: str | Path, registered_model: str | None = None,
                      alias: str | None = None, verdict: dict[str, Any] | None = None) -> dict[str, Any]:
        """Log the synthesizer in ``model_dir`` as a pyfunc model of this run; register it.

        Args:
            model_dir: a directory written by ``Synthesizer.save``.
            registered_model: registry name; default ``None`` (logged, not registered).
            alias: alias set on the new version (e.g. ``"candidate"``); default ``None``.
            verdict: the :func:`synthgen.tracking.gate.verdict_record` of the model's
                synthetic data, stored in the logged model (``verdict.json``) and set as the
                version's tags ``synthgen.verdict`` (passed / rejected) and
                ``synthgen.failed_checks``; default ``None`` (none: not servable by default).

        Returns:
            ``{"model_id", "model_uri"}`` plus ``"registered_model"``, ``"version"`` and
            ``"alias"`` when registered, and ``"verdict"`` (passed / rejected) when given.
        """
        from synthgen.tracking.gate import VERDICT_TAG, verdict_tags
        from synthgen.tracking.pyfunc import log_generator, register_generator

        model_id = log_generator(self.client, self.run_id, model_dir, verdict=verdict)
        tags = verdict_tags(verdict) if verdict is not None else {}
        info: dict[str, Any] = {"model_id": model_id, "model_uri": f"models:/{model_id}"}
        if tags:
            info["verdict"] = tags[VERDICT_TAG]
        if registered_model:
            version = register_generator(self.client, registered_model, model_id, self.run_id, alias, tags)
            info.update(registered_model=registered_model, version=version, alias=alias)
            log.info("registered %s version %s%s%s", registered_model, version, f" as @{alias}" if alias else "",
                     f" ({tags[VERDICT_TAG]})" if tags else "")
        return info

    def set_model_alias(self, name: str, version: str, alias: str) -> None:
        """Point ``models:/NAME@ALIAS`` at ``version`` (moved from any earlier version)."""
        self.client.set_registered_model_alias(name, alias, version)
        self.client.set_model_version_tag(name, version, f"synthgen.{alias}", "true")


    # -- parent and child runs (sweeps): a child carries the tag mlflow.parentRunId --------------
    def tag_run(self, run_id: str, tags: dict[str, str]) -> None:
        """Set tags on another run of the store (e.g. a sweep point's run), leaving its status alone."""
        for key, value in tags.items():
            self.client.set_tag(run_id, key, str(value))

    def child_runs(self, parent_id: str | None = None) -> list[dict[str, Any]]:
        """The runs nested under ``parent_id`` (default: this run), oldest first.

        Returns:
            ``[{"run_id", "run_name", "status", "tags", "metrics", "params"}, ...]``.
        """
        parent_id = parent_id or self.run_id
        runs = self.client.search_runs([self._experiment_id()], f"tags.mlflow.parentRunId = '{parent_id}'",
                                       order_by=["attributes.start_time ASC"], max_results=10000)
        return [{"run_id": r.info.run_id, "run_name": r.info.run_name, "status": r.info.status,
                 "tags": dict(r.data.tags), "metrics": dict(r.data.metrics), "params": dict(r.data.params)}
                for r in runs]


class TrackingCallback(Callback):
    """Sends each epoch's figures (losses, epsilon, timings) to the tracker."""

    def __init__(self, tracker: NullTracker):
        self.tracker = tracker

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.tracker.log_metrics(logs, step=epoch)


def make_tracker(uri: str | None, experiment: str) -> NullTracker:
    """A tracker for ``tracking.uri`` (``None`` switches tracking off)."""
    return NullTracker() if uri is None else MlflowTracker(uri, experiment)
