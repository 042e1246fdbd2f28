"""Augmentation as a Prefect 3 flow: ingest -> train -> generate -> validate -> augment.

The order of the DVC stages, with the tabular flow's own tasks (caching, retries) and
one more for the augment stage, so the augment manifest records the verdict on this
model's synthetic data. Run it with ``python -m pipelines.augment_flow --params
params.yaml [--set k=v ...]``; ``--skip-train`` augments with the model already under
``output.dir/model`` (and the verdict already on record). Without ``PREFECT_API_URL``
Prefect starts a temporary local server by itself.
"""

from __future__ import annotations

import sys
from typing import Any

from pipelines.tabular_flow import IO_RETRIES, generate, ingest, train, validate  # same tasks, same stage functions
from pipelines._entry import flow_main  # noqa: E402
from prefect import flow, task

from synthgen import stages
from synthgen.config import Params
from synthgen.stages import load_params
from synthgen.stages.augment_common import summary_lines


@task(name="augment", **IO_RETRIES)
def augment(params: Params) -> dict[str, Any]:
    return stages.augment(params)


@flow(name="synthgen-augment", log_prints=True)
def augment_pipeline(
    params_file: str = "params.yaml", overrides: list[str] | None = None, skip_train: bool = False
) -> dict[str, Any]:
    """ingest -> train -> generate -> validate -> augment (only augment with ``skip_train``);
    returns the augment manifest."""
    params = load_params(params_file, overrides or [])
    if not skip_train:
        ingest(params)
        train(params)
        generate(params)
        validate(params)
    return augment(params)


def main(argv: list[str] | None = None) -> int:
    def run(args) -> int:
        manifest = augment_pipeline(args.params, args.overrides, args.skip_train)
        print("\n".join(summary_lines(manifest)))
        return 0

    def extra(parser) -> None:
        parser.add_argument("--skip-train", action="store_true", help="use the model already in output.dir/model")

    return flow_main(__doc__.splitlines()[0], run, argv, extra=extra)

if __name__ == "__main__":
    sys.exit(main())
