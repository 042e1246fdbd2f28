"""Validation layer: SDMetrics-style fidelity, real Great Expectations runs, the verdict."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from synthgen.config import ValidateConfig
from synthgen.data.schema import infer_schema
from synthgen.errors import ConfigError, DataError
from synthgen.validation.fidelity import (
    contingency_similarity,
    correlation_similarity,
    fidelity_report,
    ks_complement,
    tv_complement,
)
from synthgen.validation.gx_suite import build_suite, ephemeral_context, run_suite
from synthgen.validation.verdict import evaluate, validate_synthetic

# A small fixed pair of tables; the SDMETRICS_* values below were computed with
# sdmetrics 0.32.0 on exactly these tables (see test_agrees_with_sdmetrics_live).
REAL = pd.DataFrame({
    "x": [0.5, 1.2, -0.3, 2.2, 0.9, 1.7, -1.1, 0.0, 3.1, 1.4, 0.7, -0.6],
    "y": [10, 14, 7, 22, 12, 19, 3, 9, 30, 15, 11, 6],
    "c": list("aababcabcaab"),
    "b": [True, False, False, True, False, True, False, False, True, True, False, False],
    "d": pd.to_datetime([
        "2021-01-05", "2021-02-11", "2021-01-20", "2021-06-30", "2021-03-03", "2021-05-17",
        "2021-01-01", "2021-02-02", "2021-12-24", "2021-04-04", "2021-03-15", "2021-01-09",
    ]),
})  # fmt: skip
SYN = pd.DataFrame({
    "x": [0.1, 1.9, -0.8, 2.5, 0.4, 0.9, 1.3, -0.2, 2.8, 0.6, 1.1, 4.0, 0.3, -1.5],
    "y": [12, 11, 9, 25, 8, 16, 13, 7, 24, 10, 17, 35, 9, 2],
    "c": list("abacbbadaacbab"),
    "b": [True, True, False, True, False, False, True, False, True, False, False, True, False, False],
    "d": pd.to_datetime([
        "2021-01-25", "2021-03-11", "2021-01-02", "2021-08-30", "2021-02-03", "2021-05-01", "2021-04-11",
        "2021-01-12", "2021-11-01", "2021-02-14", "2021-06-15", "2022-01-09", "2021-02-20", "2020-12-25",
    ]),
})  # fmt: skip
SDMETRICS_COLUMNS = {"x": 0.8690476190476191, "y": 0.8690476190476191, "d": 0.8214285714285714,
                     "c": 0.9047619603174557, "b": 0.9880952380952381}  # fmt: skip
SDMETRICS_PAIRS = {"x|y": 0.9691094883062229, "x|d": 0.9809536745824519, "c|b": 0.7142857142857143,
                   "x|c": 0.3571428571428572}  # x|c: ContingencySimilarity(continuous_column_names=["x"])
# QualityReport(real_*_threshold=0) on the numeric-only and the discrete-only columns.
SDMETRICS_QUALITY = {("x", "y", "d"): 0.916675196172063, ("c", "b"): 0.8303571567460306}
TOL = 1e-6  # SDMetrics' TVComplement adds 1e-6 pseudo-counts for levels only in synthetic


def _table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A table with numeric-numeric, numeric-category and category-category dependence."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    group = np.where(x + rng.normal(scale=0.5, size=n) > 0, "hi", "lo")
    return pd.DataFrame({
        "row_id": np.arange(n),
        "x": x,
        "y": np.round(3 * x + rng.normal(size=n) * 2 + 50).astype(int),
        "group": group,
        "flag": (group == "hi") ^ (rng.random(n) < 0.1),
        "when": pd.Timestamp("2022-01-01") + pd.to_timedelta((x * 40 + 200).round(), unit="D"),
        "site": "A",
        "score": np.where(rng.random(n) < 0.2, np.nan, x * 2 + rng.normal(size=n)),
    })  # fmt: skip


def _shuffle_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Each column permuted on its own: same marginals, no dependence between columns."""
    return pd.DataFrame({c: table[c].sample(frac=1, random_state=i).to_numpy() for i, c in enumerate(table)})


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return _table()


@pytest.fixture(scope="module")
def schema(table):
    return infer_schema(table)


@pytest.fixture(scope="module")
def gx_context():
    return ephemeral_context()


@pytest.fixture(scope="module")
def suite(table, schema):
    return build_suite(table, schema)


# --- fidelity: hand-computed values -----------------------------------------------------


def test_tv_complement_by_hand():
    assert tv_complement(list("aabb"), list("aaab")) == pytest.approx(0.75)
    assert tv_complement(list("ab"), list("cd")) == pytest.approx(0.0)
    # missing is a level of its own: [a, NA] vs [a, a] differ by half the mass
    assert tv_complement(["a", None], ["a", "a"]) == pytest.approx(0.5)
    assert tv_complement([1, 2, 2], [1.0, 2.0, 2.0]) == pytest.approx(1.0)


def test_ks_complement_by_hand():
    assert ks_complement([1, 2, 3, 4], [1, 2, 3, 5]) == pytest.approx(0.75)
    assert ks_complement([1, 2], [3, 4]) == pytest.approx(0.0)
    assert ks_complement([1.0, np.nan, 2.0], [2.0, 1.0]) == pytest.approx(1.0)  # NaN ignored
    assert np.isnan(ks_complement([np.nan], [1.0]))


def test_pair_metrics_by_hand():
    real = pd.DataFrame({"u": [1.0, 2.0, 3.0, 4.0], "v": [2.0, 4.0, 6.0, 8.0]})
    flipped = pd.DataFrame({"u": [1.0, 2.0, 3.0, 4.0], "v": [8.0, 6.0, 4.0, 2.0]})
    assert correlation_similarity(real, real) == pytest.approx(1.0)
    assert correlation_similarity(real, flipped) == pytest.approx(0.0)  # ρ 1 vs -1
    cat_real = pd.DataFrame({"p": list("aabb"), "q": list("xxyy")})
    cat_syn = pd.DataFrame({"p": list("aabb"), "q": list("yyxx")})
    assert contingency_similarity(cat_real, cat_syn) == pytest.approx(0.0)
    assert contingency_similarity(cat_real, cat_real.iloc[[0, 2]]) == pytest.approx(1.0)
    # numbers binned on the real edges: synthetic values moved out of range land in
    # the outer bins, so "u" = 100 falls with u = 4 (top bin)
    mixed_real = pd.DataFrame({"p": list("aabb"), "u": [1.0, 2.0, 3.0, 4.0]})
    mixed_syn = pd.DataFrame({"p": list("aabb"), "u": [1.0, 2.0, 3.0, 100.0]})
    assert contingency_similarity(mixed_real, mixed_syn, ["u"]) == pytest.approx(1.0)
    mixed_syn2 = pd.DataFrame({"p": list("aabb"), "u": [1.0, 2.0, 3.0, 3.0]})
    assert contingency_similarity(mixed_real, mixed_syn2, ["u"]) == pytest.approx(0.75)


# --- fidelity: agreement with SDMetrics -------------------------------------------------


def test_agrees_with_sdmetrics_pinned():
    report = fidelity_report(REAL, SYN, infer_schema(REAL))
    for col, expected in SDMETRICS_COLUMNS.items():
        assert report["columns"][col] == pytest.approx(expected, abs=TOL), col
    for pair, expected in SDMETRICS_PAIRS.items():
        assert report["pairs"][pair] == pytest.approx(expected, abs=TOL), pair
    for cols, expected in SDMETRICS_QUALITY.items():
        sub = REAL[list(cols)]
        got = fidelity_report(sub, SYN[list(cols)], infer_schema(sub))["quality_score"]
        assert got == pytest.approx(expected, abs=TOL), cols
    assert report["quality_score"] == pytest.approx(
        (report["column_shapes"] + report["column_pair_trends"]) / 2
    )
    assert len(report["pairs"]) == 10


def test_agrees_with_sdmetrics_live(table):
    sdmetrics = pytest.importorskip("sdmetrics")  # noqa: F841 (optional, tests only)
    from sdmetrics.column_pairs import ContingencySimilarity, CorrelationSimilarity
    from sdmetrics.reports.single_table import QualityReport
    from sdmetrics.single_column import KSComplement, TVComplement

    for col, metric in [("x", KSComplement), ("y", KSComplement), ("d", KSComplement),
                        ("c", TVComplement), ("b", TVComplement)]:  # fmt: skip
        assert SDMETRICS_COLUMNS[col] == pytest.approx(metric.compute(REAL[col], SYN[col]), abs=1e-12)
    assert SDMETRICS_PAIRS["x|c"] == pytest.approx(
        ContingencySimilarity.compute(REAL[["x", "c"]], SYN[["x", "c"]], continuous_column_names=["x"])
    )

    real = table.drop(columns=["row_id", "site"])
    syn = _table(n=300, seed=7).drop(columns=["row_id", "site"])
    syn["x"] = syn["x"] * 1.3 + 0.2
    schema = infer_schema(real)
    report = fidelity_report(real, syn, schema)
    for col in ("x", "y", "when", "score"):
        assert report["columns"][col] == pytest.approx(KSComplement.compute(real[col], syn[col]), abs=TOL)
    for col in ("group", "flag"):
        assert report["columns"][col] == pytest.approx(TVComplement.compute(real[col], syn[col]), abs=TOL)
    for a, b in [("x", "y"), ("x", "score"), ("when", "score")]:
        expected = CorrelationSimilarity.compute(real[[a, b]], syn[[a, b]])
        assert report["pairs"][f"{a}|{b}"] == pytest.approx(expected, abs=TOL)
    assert report["pairs"]["group|flag"] == pytest.approx(
        ContingencySimilarity.compute(real[["group", "flag"]], syn[["group", "flag"]]), abs=TOL
    )
    expected = ContingencySimilarity.compute(
        real[["x", "group"]], syn[["x", "group"]], continuous_column_names=["x"]
    )
    assert report["pairs"]["x|group"] == pytest.approx(expected, abs=TOL)
    # Quality report (all pairs counted, as before SDMetrics' association thresholds)
    # on the numeric columns only: the mixed-pair binning differs by design.
    numeric = ["x", "y", "when", "score"]
    metadata = {"columns": {c: {"sdtype": "datetime" if c == "when" else "numerical"} for c in numeric}}
    quality = QualityReport()
    quality.real_correlation_threshold = quality.real_association_threshold = 0
    quality.generate(real[numeric], syn[numeric], metadata, verbose=False)
    ours = fidelity_report(real[numeric], syn[numeric], infer_schema(real[numeric]))
    assert ours["quality_score"] == pytest.approx(quality.get_score(), abs=TOL)


def test_quality_of_copy_noise_and_shuffle(table, schema):
    copy = fidelity_report(table, table.copy(), schema)
    assert copy["quality_score"] == pytest.approx(1.0)
    assert set(copy["columns"]) == {"x", "y", "group", "flag", "when", "score"}  # no id/constant
    json.dumps(copy, allow_nan=False)

    shuffled = _shuffle_columns(table)
    shuffled_report = fidelity_report(table, shuffled, schema)
    assert shuffled_report["column_shapes"] == pytest.approx(1.0)  # marginals kept
    assert shuffled_report["column_pair_trends"] < 0.9  # dependence lost

    n, rng = len(table), np.random.default_rng(1)
    noise = table.copy()
    noise["x"] = rng.uniform(-10, 10, n)
    noise["y"] = rng.integers(0, 1000, n)
    noise["group"] = rng.choice(["hi", "lo", "zz"], n)
    noise["flag"] = rng.random(n) < 0.5
    noise["when"] = pd.Timestamp("2000-01-01") + pd.to_timedelta(rng.integers(0, 20000, n), unit="D")
    noise["score"] = rng.uniform(-100, 100, n)
    noisy = fidelity_report(table, noise, schema)
    assert noisy["quality_score"] < shuffled_report["quality_score"] < copy["quality_score"]
    assert noisy["quality_score"] < 0.6


def test_undefined_scores_are_none():
    real = pd.DataFrame({"x": [1.5, 2.5, 3.25], "z": [5.5, 6.5, 7.25]})  # continuous
    syn = pd.DataFrame({"x": [np.nan] * 3, "z": [1.5, 1.5, 1.5]})
    report = fidelity_report(real, syn, infer_schema(real))
    assert report["columns"]["x"] is None
    assert report["pairs"]["x|z"] is None
    assert report["quality_score"] == report["column_shapes"] == report["columns"]["z"]


# --- Great Expectations -----------------------------------------------------------------


def test_gx_copy_passes(table, suite, gx_context):
    result = run_suite(suite, table.copy(), context=gx_context)
    assert result["success"] is True, result["failed"]
    assert result["success_rate"] == 1.0 and result["n_failed"] == 0
    types = {e.expectation_type for e in suite.expectations}
    assert {
        "expect_table_columns_to_match_ordered_list",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_in_type_list",
        "expect_column_values_to_be_unique",
    } <= types
    json.dumps(result, allow_nan=False)
    assert result["result"]["statistics"]["evaluated_expectations"] == result["n_expectations"]


def test_gx_flags_broken_rows(table, suite, gx_context):
    bad = table.copy()
    bad.loc[:4, "x"] = 99.0  # out of range
    bad.loc[:2, "group"] = "zz"  # unseen level
    bad.loc[0, "when"] = pd.Timestamp("2035-01-01")  # datetime out of range
    bad["score"] = np.nan  # real has 20% missing; all missing is too many
    bad.loc[:100, "y"] = np.nan  # real has none
    bad["site"] = "B"  # constant changed
    bad.loc[1, "row_id"] = 0  # ids no longer unique
    result = run_suite(suite.to_json_dict(), bad, context=gx_context)  # the JSON form works too
    assert result["success"] is False
    failed = "\n".join(result["failed"])
    for needle in ["between(x)", "in_set(group)", "between(when)", "not_be_null(score)",
                   "not_be_null(y)", "in_set(site)", "unique(row_id)"]:  # fmt: skip
        assert needle in failed, needle
    distribution = ("expect_column_mean", "expect_column_stdev", "expect_column_median", "expect_column_kl")
    assert len([f for f in result["failed"] if not f.startswith(distribution)]) == 7
    assert result["success_rate"] == pytest.approx(1 - result["n_failed"] / result["n_expectations"])
    json.dumps(result, allow_nan=False)


def test_gx_column_order_and_fresh_context(table, suite):
    result = run_suite(suite, table[list(reversed(table.columns))])  # its own ephemeral context
    assert result["failed"] == [r for r in result["failed"] if "ordered_list" in r]
    assert result["n_failed"] == 1


# --- verdict ----------------------------------------------------------------------------


def test_evaluate_thresholds():
    cfg = ValidateConfig(min={"quality_score": 0.6, "gx_success_rate": 0.8}, max={"gx_failed": 0})
    ok = evaluate({"quality_score": 0.7, "gx_success_rate": 0.8, "gx_failed": 0}, cfg)
    assert ok["passed"] is True
    first = {"name": "quality_score", "value": 0.7, "threshold": 0.6, "passed": True, "kind": "min"}
    assert ok["checks"][0] == first
    assert [c["kind"] for c in ok["checks"]] == ["min", "min", "max"]
    bad = evaluate({"quality_score": 0.5, "gx_success_rate": 1.0, "gx_failed": 2}, cfg)
    assert bad["passed"] is False
    assert [c["passed"] for c in bad["checks"]] == [False, True, False]
    undefined = evaluate({"quality_score": float("nan"), "gx_success_rate": 1.0, "gx_failed": 0}, cfg)
    assert undefined["metrics"]["quality_score"] is None and undefined["passed"] is False
    assert evaluate({"a": 1.0}, ValidateConfig(min={}, max={}))["passed"] is True
    with pytest.raises(ConfigError, match=r"validate\.min\.nonsense"):
        evaluate({"quality_score": 1.0}, ValidateConfig(min={"nonsense": 0.5}))
    with pytest.raises(ConfigError, match=r"validate\.max\.other"):
        evaluate({"quality_score": 1.0}, ValidateConfig(min={}, max={"other": 0.5}))


def test_validate_synthetic_end_to_end(table, schema, suite):
    cfg = ValidateConfig(max={"gx_failed": 0})
    verdict, gx_result = validate_synthetic(table, table.copy(), schema, cfg, suite=suite)
    assert verdict["passed"] is True
    expected = {"quality_score", "column_shapes", "column_pair_trends", "gx_success_rate", "gx_failed"}
    assert expected <= set(verdict["metrics"])
    assert verdict["metrics"]["quality_score"] == pytest.approx(1.0)
    assert verdict["metrics"]["gx_success_rate"] == 1.0
    assert gx_result["success"] is True
    json.dumps(verdict, allow_nan=False)
    json.dumps(gx_result, allow_nan=False)

    shuffled = _shuffle_columns(table)
    shuffled["x"] = shuffled["x"] * 5  # out of range, and a different shape
    verdict, _ = validate_synthetic(table, shuffled, schema, ValidateConfig(min={"quality_score": 0.9}))
    assert verdict["passed"] is False
    assert verdict["metrics"]["gx_success_rate"] < 1.0
    assert any("between(x)" in f for f in verdict["gx"]["failed"])


def test_validate_synthetic_rejects_wrong_columns(table, schema):
    with pytest.raises(DataError, match="'score'"):
        validate_synthetic(table, table.drop(columns=["score"]), schema, ValidateConfig())
    with pytest.raises(DataError, match="'surprise'"):
        validate_synthetic(table, table.assign(surprise=1), schema, ValidateConfig())
    with pytest.raises(ConfigError, match=r"validate\.min\.typo"):
        validate_synthetic(table, table, schema, ValidateConfig(min={"typo": 1.0}))
    with pytest.raises(DataError, match=r"synthetic table has 3 rows; validating it needs at least 10 \(generate.rows"):
        validate_synthetic(table, table.head(3), schema, ValidateConfig())  # (one row crashed the privacy attack)


def test_validate_synthetic_parses_text_columns():
    n = 30
    real = pd.DataFrame({
        "ok": ["true", "false"] * (n // 2),
        "day": [f"2023-01-{i + 1:02d}" for i in range(n)],
        "amount": np.linspace(0.5, 99.5, n),
    })  # fmt: skip
    schema = infer_schema(real)
    assert [c.kind for c in schema.columns] == ["boolean", "datetime", "continuous"]
    copy = real.iloc[::-1].reset_index(drop=True)
    verdict, _ = validate_synthetic(real, copy, schema, ValidateConfig(max={}))  # a copy: no privacy ceilings
    assert verdict["passed"] is True and verdict["gx"]["failed"] == []
    verdict, _ = validate_synthetic(real, copy, schema, ValidateConfig())  # default ceilings catch the copy
    assert verdict["passed"] is False and verdict["metrics"]["exact_copy_rate"] == 1.0
    late = real.assign(day="2024-06-01")
    verdict, _ = validate_synthetic(real, late, schema, ValidateConfig())
    assert any("between(day)" in f for f in verdict["gx"]["failed"])


def test_gx_distribution_expectations(table, suite, gx_context, tmp_path):
    honest = run_suite(suite, table.sample(frac=1.0, random_state=1), context=gx_context,
                       docs_dir=tmp_path / "docs")
    assert honest["success"], honest["failed"]
    assert (tmp_path / "docs" / "index.html").is_file()
    numeric = next(c for c in table.columns if pd.api.types.is_float_dtype(table[c]))
    shifted = table.copy()
    shifted[numeric] = shifted[numeric].mean() + (shifted[numeric] - shifted[numeric].mean()) * 0.3
    result = run_suite(suite, shifted, context=gx_context)
    failed = " ".join(result["failed"])
    assert f"expect_column_stdev_to_be_between({numeric})" in failed
    categorical = next(c for c in table.columns if table[c].dtype == object and table[c].nunique() >= 2)
    skewed = table.copy()
    skewed[categorical] = table[categorical].dropna().iloc[0]
    result = run_suite(suite, skewed, context=gx_context)
    assert f"expect_column_kl_divergence_to_be_less_than({categorical})" in " ".join(result["failed"])
