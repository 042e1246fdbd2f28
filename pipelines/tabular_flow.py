"""The tabular pipeline as a Prefect 3 flow: the same stage functions as the CLI and DVC.

Run it with ``python -m pipelines.tabular_flow --params params.yaml [--set k=v ...]``.
Without ``PREFECT_API_URL`` Prefect starts a temporary local server by itself.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

# synthgen's own log lines (epochs, stage summaries) go through Prefect's logging
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "synthgen")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from pipelines._entry import flow_main  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.tasks import exponential_backoff  # noqa: E402

logging.getLogger("synthgen").setLevel(logging.INFO)

from pipelines.caching import StageCache, run_stamped  # noqa: E402
from synthgen import stages  # noqa: E402
from synthgen.config import Params  # noqa: E402
from synthgen.stages import load_params  # noqa: E402
from synthgen.errors import SynthgenError, TrackingError  # noqa: E402


def _transient(task, task_run, state) -> bool:
    """Retry I/O and tracking failures; a user mistake (bad config or data) fails at once."""
    error = state.result(raise_on_failure=False)
    return not isinstance(error, SynthgenError) or isinstance(error, TrackingError)


# I/O stages: 2 retries after 2 s and 4 s (+-50% jitter) when a file system or the MLflow store hiccups
IO_RETRIES = dict(retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=2),
                  retry_jitter_factor=0.5, retry_condition_fn=_transient)
# a stage is a cache hit when its params, inputs, code and recorded outputs are unchanged (pipelines/caching.py)
CACHED = dict(cache_policy=StageCache(), persist_result=True)


@task(name="ingest", **IO_RETRIES, **CACHED)
def ingest(params: Params) -> dict[str, Any]:
    return run_stamped("ingest", stages.ingest, params)


@task(name="train", **CACHED)
def train(params: Params) -> dict[str, Any]:
    return run_stamped("train", stages.train, params)


@task(name="generate", **IO_RETRIES, **CACHED)
def generate(params: Params) -> dict[str, Any]:
    return run_stamped("generate", stages.generate, params)


@task(name="validate", **IO_RETRIES, **CACHED)
def validate(params: Params) -> dict[str, Any]:
    return run_stamped("validate", stages.validate, params)


@flow(name="synthgen-tabular", log_prints=True)
def tabular_pipeline(params_file: str = "params.yaml", overrides: list[str] | None = None) -> dict[str, Any]:
    """ingest -> train -> generate -> validate; returns the validation report."""
    params = load_params(params_file, overrides or [])
    with stages.locked(params, "synthgen-tabular flow"):  # one writer of output.dir for the whole flow
        ingest(params)
        train(params)
        generate(params)
        return validate(params)


def main(argv: list[str] | None = None) -> int:
    def run(args) -> int:
        report = tabular_pipeline(args.params, args.overrides)
        print(f"verdict: {'passed' if report['passed'] else 'REJECTED'}; metrics: {report['metrics']}")
        return 0 if report["passed"] else 1

    return flow_main(__doc__.splitlines()[0], run, argv)

if __name__ == "__main__":
    sys.exit(main())
