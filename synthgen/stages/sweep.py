"""Parameter sweeps: expand a grid of params, compare the runs, pick the best point.

The ``sweep`` section of params.yaml names a grid (``{"model.epochs": [50, 150],
"privacy.epsilon": [null, 3]}``); :func:`expand_grid` turns it into one validated
:class:`~synthgen.config.Params` per point (the cartesian product, in the order written),
each with its own ``output.dir`` under the sweep directory. ``pipelines/sweep_flow.py`` runs
the points in parallel (Dask) and hands the results to :func:`point_row`,
:func:`frontier`, :func:`select` and :func:`write_comparison`, which live here because they
are the math of a sweep; the flow only wires.

Example::

    points = expand_grid(load_params("params.yaml", ['sweep.grid={"model.epochs": [50, 150]}']))
    rows = [point_row(p) for p in points]           # after each point's pipeline ran
    best = select(rows, params.sweep.select)        # index into rows, or None
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import math
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthgen.config import Params, SelectRule, parse_constraint, parse_params
from synthgen.errors import ConfigError
from synthgen.io import atomic_path, write_json, write_text
from synthgen.stages.lineage import registry_name
from synthgen.stages import check

log = logging.getLogger(__name__)

# figures copied from each point's validation.json into the comparison table
METRICS = ("quality_score", "mia_auc", "epsilon_spent", "detection_auc", "exact_copy_rate",
           "dcr_overfitting_share", "tstr_ratio")
_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq}


@dataclass(frozen=True)
class GridPoint:
    """One point of the grid: its id (``p00``, ``p01``, ...), its grid values and its params."""

    id: str
    values: dict[str, Any]
    params: Params


def sweep_dir(params: Params) -> Path:
    """``sweep.dir``, or ``<output.dir>/sweep`` when it is null."""
    return Path(params.sweep.dir) if params.sweep.dir else params.out / "sweep"


def _set(raw: dict[str, Any], key: str, value: Any) -> None:
    *path, last = key.split(".")
    node = raw
    for part in path:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"sweep.grid: {key}: {part!r} is not a section")
        node = child
    node[last] = value


def expand_grid(params: Params, parent_run: str | None = None) -> list[GridPoint]:
    """One validated :class:`Params` per grid point, ``output.dir`` = ``<sweep dir>/<point id>``.

    A point's params are the base params with the point's values set and an empty ``sweep``
    section.

    Args:
        params: the sweep's params (``sweep.grid`` non-empty).
        parent_run: MLflow run id set as every point's ``tracking.parent_run``; default
            ``None`` (the point runs are not nested).

    Raises:
        ConfigError: the grid is empty, or a point's params are invalid (the message names
            the point and its values).
    """
    grid = params.sweep.grid
    if not grid:
        raise ConfigError("sweep.grid: empty; give at least one key, e.g. model.epochs: [50, 150]")
    # only the keys the user set: fields left unset keep meaning "the family's default"
    # (e.g. tabular_gan's batch capped at the data and its step budget instead of epochs)
    base = json.loads(params.model_dump_json(by_alias=True, exclude_unset=True))
    base.pop("sweep", None)
    base.setdefault("output", {})
    base.setdefault("tracking", {})
    root = sweep_dir(params)
    points = []
    for index, combo in enumerate(itertools.product(*grid.values())):
        values = dict(zip(grid, combo))
        point_id = f"p{index:02d}"
        raw = copy.deepcopy(base)
        for key, value in values.items():
            _set(raw, key, value)
        raw["output"]["dir"] = str(root / point_id)
        # a point registers its generator but moves no alias: only the selected point gets them (select_aliases)
        raw["tracking"]["model_alias"] = raw["tracking"]["champion_alias"] = None
        if parent_run is not None:
            raw["tracking"]["parent_run"] = parent_run
        source = f"sweep.grid point {point_id} {values}"
        point = parse_params(raw, source=source)
        check(point, source)  # the whole config of every point, before any point runs
        points.append(GridPoint(point_id, values, point))
    return points


def point_row(point: GridPoint, error: str | None = None) -> dict[str, Any]:
    """The comparison-table row of a point: its values, status, key metrics and run id.

    Reads ``validation.json`` and ``generation.json`` of the point's ``output.dir``;
    ``error`` (the failure of its pipeline) makes a ``failed`` row without metrics.
    """
    row: dict[str, Any] = {"point": point.id, **point.values, "status": "failed" if error else "ok"}
    out = point.params.out
    validation = out / "validation.json"
    if error is None and not validation.is_file():
        error = f"{validation}: not written"
        row["status"] = "failed"
    report = json.loads(validation.read_text()) if error is None else {"metrics": {}}
    generation_path = out / "generation.json"
    generation = json.loads(generation_path.read_text()) if error is None and generation_path.is_file() else {}
    for name in METRICS:
        row[name] = _value(report["metrics"], name)  # NaN and inf become None
    row["passed"] = report.get("passed") if error is None else None
    row["train_seconds"] = generation.get("train_seconds")
    row["mlflow_run_id"] = generation.get("mlflow_run_id")
    manifest_path = out / "manifest.json"
    registered = (json.loads(manifest_path.read_text()).get("generator") or {}) if manifest_path.is_file() else {}
    row["registered_version"] = registered.get("version") if error is None else None
    row["dir"] = str(out)
    row["error"] = error
    return row


def select_aliases(best: dict[str, Any] | None, params: Params) -> list[tuple[str, str, str]]:
    """The registry aliases the sweep moves: ``(registered_model, version, alias)`` for the
    selected point only - ``tracking.model_alias`` always, ``tracking.champion_alias`` when
    its verdict passed. Grid points register their generators without aliases
    (:func:`expand_grid`), so no point but the selected one moves ``@champion``."""
    name, version = registry_name(params), (best or {}).get("registered_version")
    if not name or not version:
        return []
    aliases = [params.tracking.model_alias] + ([params.tracking.champion_alias] if best.get("passed") else [])
    return [(name, str(version), alias) for alias in aliases if alias]


def _value(row: dict[str, Any], name: str) -> float | None:
    value = row.get(name)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _axis(row: dict[str, Any], axis: str) -> float | None:
    """Privacy axis value: lower is more private; a point without DP has ``epsilon_spent`` = inf."""
    if axis == "epsilon_spent" and row.get("status") == "ok" and _value(row, axis) is None:
        return math.inf
    return _value(row, axis)


def frontier(rows: list[dict[str, Any]], axis: str = "mia_auc", fidelity: str = "quality_score") -> list[bool]:
    """Which rows lie on the fidelity-privacy frontier (Pareto-optimal).

    A row is on the frontier when no other row is at least as private (``axis`` lower or
    equal) and at least as faithful (``fidelity`` higher or equal) and strictly better in
    one. Failed rows and rows missing either figure are never on it.
    """
    scored = [(i, _axis(r, axis), _value(r, fidelity)) for i, r in enumerate(rows) if r.get("status") == "ok"]
    scored = [(i, x, y) for i, x, y in scored if x is not None and y is not None]
    on = [False] * len(rows)
    for i, x, y in scored:
        on[i] = not any(x2 <= x and y2 >= y and (x2 < x or y2 > y) for j, x2, y2 in scored if j != i)
    return on


def eligible(row: dict[str, Any], rule: SelectRule) -> tuple[bool, str]:
    """Whether ``row`` may be selected under ``rule``, and why not."""
    if row.get("status") != "ok":
        return False, "failed"
    if rule.require_passed and not row.get("passed"):
        return False, "verdict rejected"
    for metric, text in rule.subject_to.items():
        op, bound = parse_constraint(text)
        value = _value(row, metric)
        if value is None:
            return False, f"{metric} missing"
        if not _OPS[op](value, bound):
            return False, f"{metric} {value:.4g} not {op} {bound:g}"
    objective = rule.maximize or rule.minimize
    if _value(row, objective) is None:
        return False, f"{objective} missing"
    return True, ""


def select(rows: list[dict[str, Any]], rule: SelectRule) -> int | None:
    """Index of the best eligible row under ``rule`` (ties: the earlier point), or ``None``."""
    objective = rule.maximize or rule.minimize
    sign = 1.0 if rule.maximize else -1.0
    best, best_value = None, -math.inf
    for index, row in enumerate(rows):
        if eligible(row, rule)[0] and sign * _value(row, objective) > best_value:
            best, best_value = index, sign * _value(row, objective)
    return best


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def to_markdown(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A GitHub-flavoured markdown table of ``columns`` of ``rows``."""
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines) + "\n"


def plot_frontier(rows: list[dict[str, Any]], path: Path, axis: str = "mia_auc",
                  selected: int | None = None) -> Path | None:
    """Scatter of ``quality_score`` against the privacy ``axis``, frontier joined, best starred.

    Points without DP sit at the right edge, labelled ``no DP``, when ``axis`` is
    ``epsilon_spent``. Returns ``None`` when no point has both figures.
    """
    from synthgen.reports.figures import pyplot

    plt = pyplot()
    on = frontier(rows, axis)
    points = [(i, _axis(r, axis), _value(r, "quality_score")) for i, r in enumerate(rows)]
    points = [(i, x, y) for i, x, y in points if x is not None and y is not None]
    if not points:
        return None
    finite = [x for _, x, _ in points if math.isfinite(x)]
    edge = (max(finite) * 1.25 if finite and max(finite) > 0 else 1.0)
    xs = {i: (x if math.isfinite(x) else edge) for i, x, _ in points}
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=110)
    ax.scatter([xs[i] for i, _, _ in points], [y for _, _, y in points], color="#4c72b0", zorder=3, label="grid point")
    front = sorted((xs[i], y) for i, _, y in points if on[i])
    if front:
        ax.step([x for x, _ in front], [y for _, y in front], where="post", color="#dd8452", zorder=2,
                label="frontier")
    if selected is not None and selected in xs:
        ax.scatter([xs[selected]], [_value(rows[selected], "quality_score")], marker="*", s=260,
                   color="#c44e52", zorder=4, label=f"selected ({rows[selected]['point']})")
    for i, x, y in points:
        ax.annotate(rows[i]["point"] + ("" if math.isfinite(x) else " (no DP)"), (xs[i], y),
                    textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel(f"{axis} (lower is more private)")
    ax.set_ylabel("quality_score (higher is more faithful)")
    ax.set_title("fidelity against privacy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_comparison(rows: list[dict[str, Any]], params: Params, out: Path | None = None) -> dict[str, Any]:
    """Mark the frontier and the selection; write ``sweep.csv``, ``sweep.md``, ``frontier.png``, ``sweep.json``.

    Args:
        rows: :func:`point_row` results, in grid order.
        params: the sweep's params (its ``sweep`` section: grid, rule, privacy axis).
        out: folder; default :func:`sweep_dir`.

    Returns:
        The summary written to ``sweep.json``: ``grid``, ``select`` (the rule),
        ``selected`` (the best row or ``None``), ``ineligible`` (point -> reason), ``files``.
    """
    import pandas as pd

    cfg = params.sweep
    out = out or sweep_dir(params)
    on = frontier(rows, cfg.privacy_axis)
    best = select(rows, cfg.select)
    for index, row in enumerate(rows):
        row["frontier"] = on[index]
        row["selected"] = index == best
    files = {"csv": out / "sweep.csv", "markdown": out / "sweep.md", "plot": out / "frontier.png",
             "summary": out / "sweep.json"}
    write_text(files["csv"], pd.DataFrame(rows).to_csv(index=False))
    columns = ["point", *cfg.grid, "status", "quality_score", "mia_auc", "epsilon_spent", "detection_auc",
               "passed", "train_seconds", "frontier", "selected"]
    rule = cfg.select
    objective = f"maximize {rule.maximize}" if rule.maximize else f"minimize {rule.minimize}"
    constraints = ", ".join(f"{k} {v}" for k, v in rule.subject_to.items()) or "none"
    chosen = rows[best]["point"] if best is not None else "none (no point satisfies the rule)"
    text = (f"# Sweep\n\nRule: {objective} subject to {constraints}"
            f"{' and a passed verdict' if rule.require_passed else ''}. Selected: **{chosen}**.\n\n"
            + to_markdown(rows, columns))
    write_text(files["markdown"], text)
    plotted = plot_frontier(rows, files["plot"], cfg.privacy_axis, best)
    if plotted is None:
        files.pop("plot")
    summary = {
        "grid": cfg.grid,
        "select": rule.model_dump(),
        "privacy_axis": cfg.privacy_axis,
        "selected": rows[best] if best is not None else None,
        "ineligible": {r["point"]: why for r in rows for ok, why in [eligible(r, rule)] if not ok},
        "rows": rows,
        "files": {k: str(v) for k, v in files.items()},
    }
    write_json(files["summary"], summary)
    log.info("sweep: %d points, selected %s", len(rows), chosen)
    return summary
