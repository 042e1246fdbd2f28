"""Sweeps: grid expansion, frontier and selection (pure), and a real sweep on a Dask LocalCluster."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from synthgen.stages import sweep
from synthgen.config import SelectRule, parse_params
from synthgen.errors import ConfigError
from tests.conftest import tiny_params, write_params


def _row(point, quality, mia, passed=True, status="ok", eps=None):
    return {"point": point, "status": status, "quality_score": quality, "mia_auc": mia,
            "epsilon_spent": eps, "passed": passed}


def test_grid_expands_in_order_with_own_output_dirs(tmp_path):
    params = parse_params(tiny_params(tmp_path, None, sweep={
        "grid": {"model.epochs": [1, 2], "privacy.epsilon": [None, 3.0], "validate.min.quality_score": [0.2]}}))
    points = sweep.expand_grid(params, parent_run="abc")
    assert [p.id for p in points] == ["p00", "p01", "p02", "p03"]
    assert [p.values for p in points][1] == {"model.epochs": 1, "privacy.epsilon": 3.0, "validate.min.quality_score": 0.2}
    assert [(p.params.model.epochs, p.params.privacy.epsilon) for p in points] == [(1, None), (1, 3.0), (2, None), (2, 3.0)]
    assert points[3].params.out == tmp_path / "out" / "sweep" / "p03"
    assert points[0].params.validate_.min == {"quality_score": 0.2, "gx_success_rate": 0.0}  # one entry replaced
    assert all(p.params.tracking.parent_run == "abc" and p.params.sweep.grid == {} for p in points)


def test_points_keep_unset_fields_unset(tmp_path):
    """A key the user left out stays "the family's default" in every point (the project's
    params.yaml leaves tabular_gan's batch_size and epochs unset on a 275-row table)."""
    raw = tiny_params(tmp_path, None, sweep={"grid": {"model.seed": [0, 1]}})
    raw["model"] = {"name": "tabular_gan"}
    points = sweep.expand_grid(parse_params(raw))
    for point in points:
        assert point.params.model.model_fields_set == {"name", "seed"}
    assert [p.params.model.seed for p in points] == [0, 1]


@pytest.mark.parametrize("sweep_section, message", [
    ({"grid": {}}, "sweep.grid: empty"),
    ({"grid": {"model.epochs": [1, 0]}}, "point p01 {'model.epochs': 0}: model.epochs"),
    ({"grid": {"model.nope": [1]}}, "model.nope: unknown key"),
    ({"grid": {"epochs": [1]}}, "expected section.key"),
    ({"select": {"subject_to": {"mia_auc": "about 0.6"}}}, "expected an operator and a number"),
    ({"select": {"maximize": "quality_score", "minimize": "mia_auc"}}, "exactly one of maximize and minimize"),
    ({"select": {"maximize": None}}, "exactly one of maximize and minimize"),
])
def test_bad_sweep_config_is_one_named_error(tmp_path, sweep_section, message):
    with pytest.raises(ConfigError) as info:
        sweep.expand_grid(parse_params(tiny_params(tmp_path, None, sweep=sweep_section)))
    assert message in str(info.value)


def test_frontier_and_selection():
    rows = [_row("p00", 0.80, 0.70), _row("p01", 0.75, 0.55), _row("p02", 0.70, 0.60),
            _row("p03", 0.60, 0.50, passed=False), _row("p04", None, None, status="failed")]
    assert sweep.frontier(rows, "mia_auc") == [True, True, False, True, False]  # p02 is dominated by p01
    rule = SelectRule(maximize="quality_score", subject_to={"mia_auc": "<= 0.6"})
    assert sweep.select(rows, rule) == 1
    assert sweep.eligible(rows[0], rule) == (False, "mia_auc 0.7 not <= 0.6")
    assert sweep.select(rows, SelectRule(minimize="mia_auc", subject_to={})) == 3
    assert sweep.select(rows, SelectRule(minimize="mia_auc", subject_to={}, require_passed=True)) == 1
    assert sweep.select(rows, SelectRule(subject_to={"mia_auc": "< 0.5"})) is None
    # epsilon axis: a point without DP has no guarantee (inf): it is on the frontier only by fidelity
    dp = [_row("a", 0.8, 0.7, eps=None), _row("b", 0.7, 0.6, eps=3.0), _row("c", 0.6, 0.6, eps=5.0)]
    assert sweep.frontier(dp, "epsilon_spent") == [True, True, False]


def test_comparison_files(tmp_path):
    params = parse_params(tiny_params(tmp_path, None, sweep={"grid": {"model.epochs": [1, 2, 3]},
                                                             "privacy_axis": "epsilon_spent"}))
    rows = [dict(_row("p00", 0.8, 0.7), **{"model.epochs": 1}), dict(_row("p01", 0.7, 0.5, eps=2.0), **{"model.epochs": 2}),
            dict(_row("p02", None, None, status="failed"), **{"model.epochs": 3}, error="ModelError: boom")]
    summary = sweep.write_comparison(rows, params, tmp_path / "cmp")
    assert summary["selected"]["point"] == "p01" and summary["ineligible"] == {"p00": "mia_auc 0.7 not <= 0.6", "p02": "failed"}
    table = pd.read_csv(tmp_path / "cmp" / "sweep.csv")
    assert list(table["selected"]) == [False, True, False] and list(table["frontier"]) == [True, True, False]
    markdown = (tmp_path / "cmp" / "sweep.md").read_text()
    assert "Selected: **p01**" in markdown and "| p02 | 3 | failed |" in markdown
    assert (tmp_path / "cmp" / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "cmp" / "sweep.json").read_text())["selected"]["point"] == "p01"


@pytest.mark.slow  # ~2 min on 2 busy cores: `make test-team`
def test_real_sweep_on_a_local_dask_cluster(tmp_path, mlflow_uri, monkeypatch):
    from mlflow import MlflowClient
    from prefect.testing.utilities import prefect_test_harness

    from pipelines.sweep_flow import main

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    params = write_params(tmp_path / "params.yaml", tiny_params(
        tmp_path, mlflow_uri, generate={"rows": 80}, tracking={"registered_model": "sweep-generator"},
        sweep={"grid": {"model.epochs": [1, 3]}, "workers": 2, "processes": False,
               "select": {"maximize": "quality_score", "subject_to": {"mia_auc": "<= 0.9"}}}))
    with prefect_test_harness(server_startup_timeout=180):
        assert main(["--params", str(params)]) == 0
    out = tmp_path / "out" / "sweep"
    table = pd.read_csv(out / "sweep.csv")
    assert list(table["point"]) == ["p00", "p01"] and list(table["model.epochs"]) == [1, 3]
    assert list(table["status"]) == ["ok", "ok"] and table["quality_score"].between(0, 1).all()
    summary = json.loads((out / "sweep.json").read_text())
    eligible = table[table["mia_auc"] <= 0.9]
    expected = eligible.loc[eligible["quality_score"].idxmax(), "point"] if len(eligible) else None
    assert (summary["selected"] or {}).get("point") == expected
    assert (out / "frontier.png").stat().st_size > 1000 and "| p01 | 3 | ok |" in (out / "sweep.md").read_text()

    client = MlflowClient(tracking_uri=mlflow_uri)
    experiment = client.get_experiment_by_name("synthgen")
    parents = client.search_runs([experiment.experiment_id], "tags.`synthgen.sweep` = 'parent'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = client.search_runs([experiment.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    assert sorted(r.data.tags["synthgen.sweep.point"] for r in children) == ["p00", "p01"]
    assert sorted(r.info.run_id for r in children) == sorted(table["mlflow_run_id"])
    by_point = {r.data.tags["synthgen.sweep.point"]: r for r in children}
    for _, row in table.iterrows():
        assert math.isclose(by_point[row["point"]].data.metrics["quality_score"], row["quality_score"])
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id, "sweep")}
    assert {"sweep/sweep.csv", "sweep/sweep.md", "sweep/frontier.png", "sweep/sweep.json"} <= artifacts

    # registry aliases move only to the selected point (issue 16): both points registered a version
    name = "sweep-generator"
    versions = {v.run_id: v for v in client.search_model_versions(f"name = '{name}'")}
    assert set(table["mlflow_run_id"]) <= set(versions)
    selected = summary["selected"]
    for _, row in table.iterrows():
        aliases = set(client.get_model_version(name, versions[row["mlflow_run_id"]].version).aliases)
        if selected is not None and row["point"] == selected["point"]:
            assert aliases == ({"candidate", "champion"} if selected["passed"] else {"candidate"})
        else:
            assert aliases == set(), (row["point"], aliases)
