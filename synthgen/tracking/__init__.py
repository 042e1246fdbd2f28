"""The tracking layer: the only package of the library that touches MLflow.

Stages talk to a :class:`Tracker`; training reaches it through :class:`TrackingCallback`.
Runs are addressed by id through ``MlflowClient`` (never the thread-local "active run"),
so the same code works from the CLI, from DVC stages in separate processes and from
Prefect tasks on worker threads. ``tracking.uri: null`` gives a :class:`NullTracker`.
An outage of the store during training is never fatal: inside :meth:`MlflowTracker.tolerant`
(the train stage, and :class:`TrackingCallback` for the length of a fit) failed logging
calls are kept and retried (:mod:`synthgen.tracking.outage`), and a run whose calls could not
all be sent is tagged ``synthgen.tracking=incomplete`` (:attr:`MlflowTracker.incomplete`).
:mod:`synthgen.tracking.pyfunc` wraps a saved synthesizer as an MLflow pyfunc model
(logged with its verdict once the validate stage has one, registered under
``tracking.registered_model`` and aliased); :mod:`synthgen.tracking.gate` refuses to
serve a generator whose verdict failed or is missing. Sweeps nest each point's
run under a parent run through the ``mlflow.parentRunId`` tag (``tracking.parent_run``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from synthgen.errors import TrackingError
from synthgen.io import DIGEST_CHARS
from synthgen.tracking.artifacts import quiet_mlflow
from synthgen.tracking.outage import TRACKING_TAG, PendingCalls, first_line
from synthgen.training.callbacks import Callback

log = logging.getLogger(__name__)

#: Metrics per ``log_batch`` request (MLflow's limit is 1000).
_BATCH_METRICS = 1000


class NullTracker:
    """Tracking switched off: every call is a no-op."""

    run_id: str | None = None
    uri: str | None = None
    incomplete: bool = False  # some tracking calls of the run never reached the store

    def tolerant(self) -> contextlib.AbstractContextManager[Any]:
        """A block in which an outage of the store is logged and retried, never raised."""
        return contextlib.nullcontext(self)

    def catch_up(self) -> bool:
        """Send what an outage held back; ``True`` when nothing is left."""
        return True

    def end_stale(self, run_id: str | None, status: str = "KILLED") -> bool:
        """End ``run_id`` as ``status`` when it is still RUNNING (a killed attempt's run)."""
        return False

    def start(self, run_name: str, tags: dict[str, str] | None = None) -> str | None:
        return None

    def resume(self, run_id: str | None) -> None:
        return None

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_history(self, rows: list[dict[str, float]]) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def end(self, status: str = "FINISHED") -> None: ...

    def callback(self) -> Callback:
        return Callback()

    def log_generator(self, model_dir: str | Path, registered_model: str | None = None,
                      alias: str | None = None, verdict: dict[str, Any] | None = None) -> dict[str, Any]:
        return {}

    def set_model_alias(self, name: str, version: str, alias: str) -> None: ...

    def log_datasets(self, datasets: list[dict[str, Any]]) -> None: ...

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
        self.pending = PendingCalls()
        self.incomplete = False
        self._tolerating = 0

    @property
    def client(self):
        if self._client is None:
            quiet_mlflow()
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
            from synthgen.tracking.store import open_client

            self._client = open_client(self.uri)  # a shared SQLite store: WAL, created under a file lock
        return self._client

    def _experiment_id(self) -> str:
        try:
            found = self.client.get_experiment_by_name(self.experiment)
            if found is not None:
                return found.experiment_id
            try:
                return self.client.create_experiment(self.experiment)
            except Exception:  # noqa: BLE001 - a run sharing the store may have created it meanwhile
                found = self.client.get_experiment_by_name(self.experiment)
                if found is None:
                    raise
                return found.experiment_id
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

    # -- outages: inside tolerant(), a failed call is kept and retried, never raised -------------
    @contextlib.contextmanager
    def tolerant(self) -> Iterator[MlflowTracker]:
        """A block in which the logging calls (params, metrics, artifacts, tags, ``end``)
        never raise: a failure is logged, the call kept and retried later (see
        :mod:`synthgen.tracking.outage`). Leaving the outermost block catches up
        (:meth:`catch_up`). Blocks nest; leaving one restores the state it was entered in."""
        depth = self._tolerating
        self._tolerating += 1
        try:
            yield self
        finally:
            self._tolerating = depth
            if not depth:
                self.catch_up()

    def catch_up(self) -> bool:
        """Send what an outage held back (a few tries, short pauses).

        Returns:
            ``True`` when everything reached the store. Otherwise :attr:`incomplete` is set
            and the run tagged ``synthgen.tracking=incomplete`` if the store takes that;
            a run tagged so that catches up later is re-tagged ``complete``.
        """
        if self.pending.catch_up():
            if self.incomplete:
                self.incomplete = False
                self._quietly(f"tag {TRACKING_TAG}=complete", lambda: self.client.set_tag(
                    self.run_id, TRACKING_TAG, "complete"))
            return True
        self.incomplete = True
        self._quietly(f"tag {TRACKING_TAG}=incomplete", lambda: self.client.set_tag(
            self.run_id, TRACKING_TAG, "incomplete"))
        return False

    def _quietly(self, what: str, send: Callable[[], Any]) -> bool:
        try:
            send()
            return True
        except Exception as exc:  # noqa: BLE001 - the store is down: say so, go on
            log.warning("tracking: %s failed (%s)", what, first_line(exc))
            return False

    def _send(self, what: str, send: Callable[[], Any]) -> None:
        if self._tolerating:
            self.pending.call(what, send)
        else:
            send()

    def end_stale(self, run_id: str | None, status: str = "KILLED") -> bool:
        """End ``run_id`` as ``status`` when it is still RUNNING: the run of an attempt that
        was killed (a killed process cannot end its own run). Never raises: a run that
        cannot be read or ended is reported as a warning.

        Returns:
            Whether the run was ended.
        """
        if not run_id:
            return False
        try:
            if self.client.get_run(run_id).info.status != "RUNNING":
                return False
            self.client.set_terminated(run_id, status=status)
        except Exception as exc:  # noqa: BLE001 - a deleted or unreadable run: nothing to end
            log.warning("tracking: could not end the earlier run %s (%s)", run_id, first_line(exc))
            return False
        log.info("tracking: the earlier run %s was still RUNNING (its process was killed); ended as %s",
                 run_id, status)
        return True

    # -- logging ---------------------------------------------------------------------------------
    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in params.items()]
        run_id = self.run_id
        for start in range(0, len(items), 100):
            chunk = items[start : start + 100]
            self._send("logging params", lambda chunk=chunk: self.client.log_batch(run_id, params=chunk))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._log_steps([(metrics, step or 0)], f"metrics of step {step or 0}")

    def log_history(self, rows: list[dict[str, float]]) -> None:
        """Log epoch rows ``{"epoch": e, **figures}`` as metrics at step ``e`` (batched):
        the epochs a resumed fit restored from its checkpoint."""
        steps = [({k: v for k, v in row.items() if k != "epoch"}, int(row["epoch"])) for row in rows]
        if steps:
            self._log_steps(steps, f"metrics of epochs {steps[0][1]}-{steps[-1][1]}")

    def _log_steps(self, steps: list[tuple[dict[str, float], int]], what: str) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)  # the time of the figures, also when an outage delays them
        items = [
            Metric(k, float(v), now, step)
            for metrics, step in steps
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ]
        run_id = self.run_id
        for start in range(0, len(items), _BATCH_METRICS):
            chunk = items[start : start + _BATCH_METRICS]
            self._send(what, lambda chunk=chunk: self.client.log_batch(run_id, metrics=chunk))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path, run_id = Path(path), self.run_id
        if path.is_dir():
            self._send(f"logging {path.name}/",
                       lambda: self.client.log_artifacts(run_id, str(path), artifact_path or path.name))
        else:
            self._send(f"logging {path.name}", lambda: self.client.log_artifact(run_id, str(path), artifact_path))

    def set_tags(self, tags: dict[str, str]) -> None:
        run_id = self.run_id
        for key, value in tags.items():
            self._send(f"tag {key}", lambda key=key, value=value: self.client.set_tag(run_id, key, value))

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id is not None:
            run_id = self.run_id
            self._send(f"ending the run as {status}", lambda: self.client.set_terminated(run_id, status=status))

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

    def log_datasets(self, datasets: list[dict[str, Any]]) -> None:
        """Log datasets as this run's inputs (the run's Datasets panel, MLflow's lineage view).

        Args:
            datasets: ``{"name", "digest", "source", "schema", "rows", "context"}`` each:
                ``digest`` the manifest's :func:`~synthgen.io.data_digest` (36 hex digits of
                the sha256, the longest digest MLflow accepts), ``source`` a path, ``schema`` a JSON-able description (names and kinds, no
                values), ``rows`` the row (image) count - the profile holds nothing else -
                and ``context`` the input tag (``source``, ``training``, ``evaluation``,
                ``output``: MLflow has no dataset outputs, so the synthetic set is an input
                tagged ``output``).
        """
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [DatasetInput(
            Dataset(name=d["name"], digest=d["digest"][:DIGEST_CHARS], source_type="local",
                    source=json.dumps({"uri": str(d["source"])}),
                    schema=json.dumps(d["schema"]), profile=json.dumps({"num_rows": int(d["rows"])})),
            tags=[InputTag("mlflow.data.context", d["context"])]) for d in datasets]
        run_id = self.run_id
        self._send("logging the datasets", lambda: self.client.log_inputs(run_id, datasets=inputs))

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
    """Sends each epoch's figures (losses, epsilon, timings) to the tracker, and after a
    resume the restored epochs' figures; an outage of the store never stops training.

    From ``on_train_start`` to ``on_train_end`` the tracker tolerates outages
    (:meth:`MlflowTracker.tolerant`): a failed call - this callback's or another's, such as a
    sample grid sent during the fit - is logged, kept and retried at a later epoch; at the
    end of training what is left is retried a few times, and a run that stays incomplete is
    tagged ``synthgen.tracking=incomplete`` (when the store takes the tag) and has
    ``tracker.incomplete`` set.
    """

    def __init__(self, tracker: NullTracker):
        self.tracker = tracker
        self._scope: contextlib.ExitStack | None = None

    def on_train_start(self, model: Any) -> None:
        self._scope = contextlib.ExitStack()
        self._scope.enter_context(self.tracker.tolerant())

    def on_train_resume(self, epoch: int, history: list[dict[str, float]]) -> None:
        self.tracker.log_history(history)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.tracker.log_metrics(logs, step=epoch)

    def on_train_end(self, model: Any, logs: dict[str, float]) -> None:
        if self._scope is not None:
            self._scope.close()  # catches up when no outer block tolerates outages
            self._scope = None


def make_tracker(uri: str | None, experiment: str) -> NullTracker:
    """A tracker for ``tracking.uri`` (``None`` switches tracking off)."""
    return NullTracker() if uri is None else MlflowTracker(uri, experiment)
