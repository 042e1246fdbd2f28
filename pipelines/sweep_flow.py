"""A parameter sweep as a Prefect 3 flow: one pipeline per grid point on a Dask cluster.

Run it with ``python -m pipelines.sweep_flow --params params.yaml [--set k=v ...]``, the grid
in the ``sweep`` section (e.g. ``--set 'sweep.grid={model.epochs: [50, 150]}'``). The points
run in parallel through ``prefect_dask.DaskTaskRunner``: a ``LocalCluster`` of
``sweep.workers`` workers, or the scheduler at ``sweep.address`` (``tcp://host:8786``) of a real
cluster whose workers have synthgen installed and see the same paths. One MLflow parent run
spans the sweep; every point's pipeline run is its child (``mlflow.parentRunId``). The
comparison (``sweep.csv``, ``sweep.md``, ``frontier.png``, ``sweep.json``) lands in the sweep
directory (``sweep.dir``, default ``<output.dir>/sweep``). Wiring only: the grid, the
frontier and the selection are :mod:`synthgen.stages.sweep`.
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

from synthgen import stages  # noqa: E402
from synthgen.stages import sweep  # noqa: E402
from synthgen.version import __version__  # noqa: E402
from synthgen.config import SweepConfig  # noqa: E402
from synthgen.stages import load_params  # noqa: E402
from synthgen.tracking import make_tracker  # noqa: E402


def task_runner(cfg: SweepConfig):
    """A DaskTaskRunner for ``sweep``: the scheduler at ``address``, else a LocalCluster."""
    from prefect_dask import DaskTaskRunner

    if cfg.address:
        return DaskTaskRunner(address=cfg.address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": cfg.workers, "threads_per_worker": 1,
                                          "processes": cfg.processes, "dashboard_address": None})


@task(name="sweep-point")
def run_point(point: sweep.GridPoint) -> dict[str, Any]:
    stages.run(point.params)
    return sweep.point_row(point)


@flow(name="synthgen-sweep", log_prints=True)
def sweep_pipeline(params_file: str = "params.yaml", overrides: list[str] | None = None) -> dict[str, Any]:
    """Run every grid point, compare them, select the best; returns the ``sweep.json`` summary."""
    params = load_params(params_file, overrides or [])
    sweep.expand_grid(params)  # a bad grid fails before the parent run exists
    tracker = make_tracker(params.tracking.uri, params.tracking.experiment)
    parent = tracker.start(run_name=f"sweep-{len(params.sweep.grid)}keys",
                           tags={"synthgen.version": __version__, "synthgen.sweep": "parent"})
    tracker.log_params({"sweep.grid": params.sweep.grid, "sweep.select": params.sweep.select.model_dump(),
                        "sweep.privacy_axis": params.sweep.privacy_axis})
    points = sweep.expand_grid(params, parent_run=parent)
    futures = [run_point.submit(point) for point in points]
    rows = []
    for point, future in zip(points, futures):
        try:
            rows.append(future.result())
        except Exception as exc:  # noqa: BLE001 - a failed point is a row of the table, not the end of the sweep
            rows.append(sweep.point_row(point, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"))
    summary = sweep.write_comparison(rows, params)
    for row in rows:
        if row.get("mlflow_run_id"):
            tracker.tag_run(row["mlflow_run_id"], {"synthgen.sweep.point": row["point"],
                                                   "synthgen.sweep.selected": str(row["selected"]).lower()})
    for path in summary["files"].values():
        tracker.log_artifact(path, "sweep")
    best = summary["selected"]
    if best is not None:
        tracker.log_metrics({f"best_{k}": best[k] for k in sweep.METRICS if best.get(k) is not None})
        tracker.set_tags({"synthgen.sweep.best_point": best["point"],
                          "synthgen.sweep.best_run": best.get("mlflow_run_id") or ""})
    for name, version, alias in sweep.select_aliases(best, params):  # points moved none
        tracker.set_model_alias(name, version, alias)
    tracker.end("FINISHED" if any(r["status"] == "ok" for r in rows) else "FAILED")
    summary["parent_run_id"] = parent
    return summary


def run_sweep(params_file: str = "params.yaml", overrides: list[str] | None = None) -> dict[str, Any]:
    """Validate the params, then run :func:`sweep_pipeline` on the Dask runner ``sweep`` asks for.

    Raises:
        ConfigError: the params or the grid are invalid (nothing has run).
    """
    params = load_params(params_file, overrides or [])
    sweep.expand_grid(params)
    return sweep_pipeline.with_options(task_runner=task_runner(params.sweep))(params_file, overrides or [])


def main(argv: list[str] | None = None) -> int:
    def run(args) -> int:
        summary = run_sweep(args.params, args.overrides)
        best = summary["selected"]
        print(f"sweep: {len(summary['rows'])} points -> {summary['files']['markdown']}")
        if best is None:
            print("no point satisfies sweep.select")
            return 1
        print(f"selected {best['point']}: " + ", ".join(f"{k}={best[k]}" for k in summary["grid"])
              + f"; quality_score={best['quality_score']}, mia_auc={best['mia_auc']}")
        return 0

    return flow_main(__doc__.splitlines()[0], run, argv)

if __name__ == "__main__":
    sys.exit(main())
