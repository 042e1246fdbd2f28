"""The image pipeline (``data.kind: image``) as a Prefect 3 flow: wiring only.

Run it with ``python -m pipelines.image_flow --params params.images.yaml [--set k=v ...]``.
The tasks call the same stage functions as the CLI and DVC (``synthgen.stages`` dispatches
them to ``synthgen/stages/images.py`` on ``data.kind``).
"""

from __future__ import annotations

import sys
from typing import Any

from pipelines.tabular_flow import generate, ingest, train, validate  # same tasks, same stage functions
from pipelines._entry import flow_main  # noqa: E402
from prefect import flow

from synthgen.stages import load_params, locked


@flow(name="synthgen-images", log_prints=True)
def image_pipeline(params_file: str = "params.images.yaml", overrides: list[str] | None = None) -> dict[str, Any]:
    """ingest -> train -> generate -> validate for images; returns the validation report."""
    from synthgen.errors import ConfigError

    params = load_params(params_file, overrides or [])
    if params.data.kind != "image":
        raise ConfigError(f"{params_file}: data.kind is {params.data.kind!r}; this flow runs images")
    with locked(params, "synthgen-images flow"):  # one writer of output.dir for the whole flow
        ingest(params)
        train(params)
        generate(params)
        return validate(params)


def main(argv: list[str] | None = None) -> int:
    def run(args) -> int:
        report = image_pipeline(args.params, args.overrides)
        metrics = {k: report["metrics"].get(k) for k in ("generated_class_accuracy", "fid_domain", "tstr_accuracy")}
        print(f"verdict: {'passed' if report['passed'] else 'REJECTED'}; {metrics}")
        return 0 if report["passed"] else 1

    return flow_main(__doc__.splitlines()[0], run, argv, default_params="params.images.yaml", kind="image")

if __name__ == "__main__":
    sys.exit(main())
