"""Augmentation as a Prefect 3 flow: ingest -> train -> augment, the CLI's stage functions.

Run it with ``python -m pipelines.augment_flow --params params.yaml [--set k=v ...]``;
``--skip-train`` augments with the model already under ``output.dir/model``. Without
``PREFECT_API_URL`` Prefect starts a temporary local server by itself.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "synthgen")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from pipelines._entry import flow_main  # noqa: E402
from prefect import flow, task  # noqa: E402

logging.getLogger("synthgen").setLevel(logging.INFO)

from synthgen import pipeline  # noqa: E402
from synthgen.augment import augment_stage  # noqa: E402
from synthgen.config import Params, load_params  # noqa: E402

IO_RETRIES = dict(retries=2, retry_delay_seconds=[2, 10])


@task(name="ingest", **IO_RETRIES)
def ingest(params: Params) -> dict[str, Any]:
    return pipeline.ingest_stage(params)


@task(name="train")
def train(params: Params) -> dict[str, Any]:
    return pipeline.train_stage(params)


@task(name="augment")
def augment(params: Params) -> dict[str, Any]:
    return augment_stage(params)


@flow(name="synthgen-augment", log_prints=True)
def augment_pipeline(
    params_file: str = "params.yaml", overrides: list[str] | None = None, skip_train: bool = False
) -> dict[str, Any]:
    """ingest -> train -> augment (only augment with ``skip_train``); returns the augment manifest."""
    params = load_params(params_file, overrides or [])
    if not skip_train:
        ingest(params)
        train(params)
    return augment(params)


def main(argv: list[str] | None = None) -> int:
    def run(args) -> int:
        manifest = augment_pipeline(args.params, args.overrides, args.skip_train)
        print(f"augment: {manifest['rows']}; lift: {manifest['benefit']}")
        return 0

    def extra(parser) -> None:
        parser.add_argument("--skip-train", action="store_true", help="use the model already in output.dir/model")

    return flow_main(__doc__.splitlines()[0], run, argv, extra=extra)

if __name__ == "__main__":
    sys.exit(main())
