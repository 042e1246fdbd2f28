"""The tabular pipeline as a Prefect 3 flow: the same stage functions as the CLI and DVC.

Run it with ``python -m pipelines.tabular_flow --params params.yaml [--set k=v ...]``.
Without ``PREFECT_API_URL`` Prefect starts a temporary local server by itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

# synthgen's own log lines (epochs, stage summaries) go through Prefect's logging
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "synthgen")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from prefect import flow, task  # noqa: E402

logging.getLogger("synthgen").setLevel(logging.INFO)

from synthgen import pipeline  # noqa: E402
from synthgen.config import Params, load_params  # noqa: E402

IO_RETRIES = dict(retries=2, retry_delay_seconds=[2, 10])


@task(name="ingest", **IO_RETRIES)
def ingest(params: Params) -> dict[str, Any]:
    return pipeline.ingest_stage(params)


@task(name="train")
def train(params: Params) -> dict[str, Any]:
    return pipeline.train_stage(params)


@task(name="generate", **IO_RETRIES)
def generate(params: Params) -> dict[str, Any]:
    return pipeline.generate_stage(params)


@task(name="validate", **IO_RETRIES)
def validate(params: Params) -> dict[str, Any]:
    return pipeline.validate_stage(params)


@flow(name="synthgen-tabular", log_prints=True)
def tabular_pipeline(params_file: str = "params.yaml", overrides: list[str] | None = None) -> dict[str, Any]:
    """ingest -> train -> generate -> validate; returns the validation report."""
    params = load_params(params_file, overrides or [])
    ingest(params)
    train(params)
    generate(params)
    return validate(params)


def main(argv: list[str] | None = None) -> int:
    from synthgen.errors import SynthgenError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        load_params(args.params, args.overrides)  # bad config: exit 2 before Prefect starts
        report = tabular_pipeline(args.params, args.overrides)
    except SynthgenError as exc:
        print(f"synthgen: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"verdict: {'passed' if report['passed'] else 'REJECTED'}; metrics: {report['metrics']}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
