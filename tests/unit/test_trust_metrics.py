"""Trust metrics: detection, utility (TSTR) and privacy, on tiny and generated tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from synthgen.config import ValidateConfig
from synthgen.data.schema import ColumnSpec, TableSchema, conform, infer_schema
from synthgen.errors import ConfigError
from synthgen.validation.detection import detection_report
from synthgen.validation.encoding import MixedEncoder, nearest
from synthgen.validation.privacy import (
    attribute_risk,
    exact_copy_rate,
    privacy_filter,
    privacy_report,
)
from synthgen.validation.utility import utility_report
from synthgen.validation.verdict import validate_synthetic

from tests.conftest import PENGUINS


def _schema(**kinds: str) -> TableSchema:
    return TableSchema([ColumnSpec(name, kind, "object") for name, kind in kinds.items()])


def _mixed(n: int, seed: int = 0) -> pd.DataFrame:
    """Numbers, integers, categories and a boolean with strong dependence; a few missing."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = 2 * x + rng.normal(scale=0.3, size=n)
    frame = pd.DataFrame({
        "x": x,
        "y": y,
        "z": rng.uniform(0, 5, n),
        "k": np.round(np.abs(x) * 20).astype(int) + rng.integers(0, 30, n),
        "grp": np.where(x + rng.normal(scale=0.3, size=n) > 0, "hi", "lo"),
        "d": np.array(list("abcd"))[np.clip((y + 4) // 2, 0, 3).astype(int)],
        "flag": rng.random(n) < 0.3,
        "label": np.where(x + y + rng.normal(scale=0.5, size=n) > 0.5, "pos", "neg"),
    })  # fmt: skip
    frame.loc[rng.random(n) < 0.05, "z"] = np.nan
    frame.loc[rng.random(n) < 0.05, "d"] = None
    return frame


@pytest.fixture(scope="module")
def mixed():
    """Train, holdout and an independent 'synthetic' draw: three splits of one table."""
    table = _mixed(3000)
    schema = infer_schema(table, target="label")
    table = conform(table, schema)
    return schema, table.iloc[:1000].reset_index(drop=True), table.iloc[1000:2000].reset_index(
        drop=True), table.iloc[2000:].reset_index(drop=True)


@pytest.fixture(scope="module")
def penguins():
    table = pd.read_csv(PENGUINS)
    schema = infer_schema(table, target="species")
    table = conform(table, schema)
    perm = np.random.default_rng(0).permutation(len(table))
    half = len(table) // 2
    return schema, table.iloc[perm[:half]].reset_index(drop=True), table.iloc[perm[half:]].reset_index(drop=True)


# --- hand-computed values on tiny tables -------------------------------------------

TINY = _schema(x="continuous", c="categorical")
TRAIN = pd.DataFrame({"x": [0.0, 10.0, 4.0], "c": ["a", "b", "a"]})
SYN = pd.DataFrame({"x": [0.0, 5.0, 4.0], "c": ["a", "b", "b"]})


def test_dcr_and_exact_copies_by_hand():
    # range 10; DCR = mean(|dx|/10, mismatch):  (0,a)->row0: 0
    # (5,b): row0 (0.5+1)/2, row1 (0.5+0)/2 = 0.25, row2 (0.1+1)/2  -> 0.25
    # (4,b): row0 (0.4+1)/2, row1 (0.6+0)/2 = 0.30, row2 (0+1)/2 = 0.5 -> 0.30, 2nd 0.5
    enc = MixedEncoder.fit(TRAIN, TINY, others=[SYN])
    dist, idx = nearest(enc.transform(SYN), enc.transform(TRAIN), 2, weights=enc.l2_weights())
    assert dist[:, 0] == pytest.approx([0.0, 0.25, 0.30], abs=1e-6)
    assert idx[:, 0].tolist() == [0, 1, 1]
    assert dist[2, 1] == pytest.approx(0.5, abs=1e-6)
    assert exact_copy_rate(SYN, TRAIN, TINY) == pytest.approx(1 / 3)
    # integer 3, float 3.0 and text "3" are the same category value
    cat = _schema(n="categorical")
    assert exact_copy_rate(pd.DataFrame({"n": ["3", "4"]}), pd.DataFrame({"n": [3, 5]}), cat) == 0.5
    report = privacy_report(TRAIN, SYN, TINY)["metrics"]
    assert report["dcr_synthetic_median"] == pytest.approx(0.25, abs=1e-6)
    # NNDR per row: 0/0.2 (a copy; (4,a) is 0.2 away), 0.25/0.55, 0.30/0.50: median 0.25/0.55
    assert report["nndr"] == pytest.approx(0.25 / 0.55, abs=1e-6)
    assert report["dcr_overfitting_share"] is None and report["mia_auc"] is None


def test_missing_values_in_distances():
    # missing vs present = 1, missing vs missing = 0 (SDMetrics' convention)
    train = pd.DataFrame({"x": [0.0, np.nan, 10.0], "c": ["a", None, "b"]})
    syn = pd.DataFrame({"x": [np.nan, 5.0], "c": [None, None]})
    enc = MixedEncoder.fit(train, TINY, others=[syn])
    dist, idx = nearest(enc.transform(syn), enc.transform(train), 3)
    assert dist[0].tolist() == pytest.approx([0.0, 1.0, 1.0], abs=1e-6)  # row1 exact; rows 0, 2: 1+1
    assert idx[0, 0] == 1
    assert dist[1].tolist() == pytest.approx([0.5, 0.75, 0.75], abs=1e-6)  # (1+0)/2, (0.5+1)/2 twice


def test_agrees_with_sdmetrics_dcr():
    dcr_utils = pytest.importorskip("sdmetrics.single_table.privacy.dcr_utils")
    rng = np.random.default_rng(3)
    real, syn = _mixed(60, seed=1)[["x", "z", "d", "flag"]], _mixed(25, seed=2)[["x", "z", "d", "flag"]]
    syn["x"] = syn["x"].clip(real["x"].min(), real["x"].max())  # SDMetrics caps, we clamp: equal inside
    syn["z"] = syn["z"].clip(real["z"].min(), real["z"].max())
    syn.loc[rng.random(25) < 0.2, "x"] = np.nan
    schema = infer_schema(real)
    metadata = {"columns": {"x": {"sdtype": "numerical"}, "z": {"sdtype": "numerical"},
                            "d": {"sdtype": "categorical"}, "flag": {"sdtype": "boolean"}}}
    expected = dcr_utils.calculate_dcr(syn, real, metadata).to_numpy()
    enc = MixedEncoder.fit(real, schema, others=[syn])
    dist, _ = nearest(enc.transform(syn), enc.transform(real), 1, n_candidates=len(real))
    assert dist[:, 0] == pytest.approx(expected, abs=1e-5)


def test_nearest_candidates_match_brute_force():
    rng = np.random.default_rng(0)
    ref, query = rng.random((400, 12), dtype=np.float32), rng.random((150, 12), dtype=np.float32)
    brute = np.abs(query[:, None, :] - ref[None]).sum(-1)
    exact, _ = nearest(query, ref, 2, n_candidates=len(ref))
    assert exact == pytest.approx(np.sort(brute, axis=1)[:, :2], abs=1e-4)
    approx, _ = nearest(query, ref, 1)  # L2 candidates: an upper bound, nearly always exact
    assert np.all(approx[:, 0] >= exact[:, 0] - 1e-5)
    assert np.mean(np.isclose(approx[:, 0], exact[:, 0], atol=1e-5)) > 0.95


def test_overfitting_share_by_hand():
    schema = _schema(x="continuous")
    train = pd.DataFrame({"x": [0.0, 2.0, 6.0]})
    holdout = pd.DataFrame({"x": [1.0, 4.0, 6.0]})
    # 0.1 -> train; 3.9 -> holdout; 6.0 tie (one half); 2.5 -> train (0.5 vs 1.5)
    syn = pd.DataFrame({"x": [0.1, 3.9, 6.0, 2.5]})
    m = privacy_report(train, syn, schema, holdout, density_k=1)["metrics"]
    assert m["dcr_overfitting_share"] == pytest.approx(2.5 / 4)
    assert m["dcr_overfitting_protection"] == pytest.approx(0.75)
    assert m["exact_copy_rate"] == pytest.approx(0.25)
    # holdout -> train: 1->0 or 2 (1/6), 4->2 or 6 (2/6), 6->6 (0): median 1/6
    assert m["dcr_holdout_median"] == pytest.approx(1 / 6, abs=1e-6)


# --- known-good and known-bad synthetic tables ---------------------------------------


def test_copy_of_train_fails_privacy(penguins):
    schema, train, holdout = penguins
    out = privacy_report(train, train.copy(), schema, holdout, sensitive=["sex"])
    m = out["metrics"]
    assert m["exact_copy_rate"] == 1.0
    assert m["dcr_synthetic_median"] == 0.0 and m["nndr"] == 0.0
    assert m["dcr_overfitting_share"] > 0.95
    assert m["mia_auc"] > 0.9 and m["mia_auc"] == max(m["mia_auc_distance"], m["mia_auc_density"])
    assert m["dcr_baseline_protection"] == 0.0
    assert m["attribute_risk"] == m["attribute_risk_sex"] > 0.5
    assert set(out["seconds"]) >= {"mia_auc", "attribute_risk"}


def test_independent_draw_passes_privacy(mixed):
    schema, train, holdout, syn = mixed
    m = privacy_report(train, syn, schema, holdout, sensitive=["grp", "y"])["metrics"]
    assert m["exact_copy_rate"] == 0.0
    assert m["dcr_overfitting_share"] == pytest.approx(0.5, abs=0.06)
    assert m["mia_auc_distance"] == pytest.approx(0.5, abs=0.07)
    assert m["mia_auc_density"] == pytest.approx(0.5, abs=0.07)
    assert m["dcr_synthetic_median"] == pytest.approx(m["dcr_holdout_median"], rel=0.2)
    assert 0.3 < m["nndr"] < 1.0
    assert 0.0 < m["dcr_baseline_protection"] < 1.0
    assert m["attribute_risk"] < 0.1


def test_attribute_risk_of_a_numeric_secret(mixed):
    schema, train, holdout, syn = mixed
    leaked = attribute_risk(train, holdout, train.copy(), schema, "y")
    fair = attribute_risk(train, holdout, syn, schema, "y")
    assert leaked["attack_rate"] == 1.0 and leaked["risk"] > 0.5
    assert fair["risk"] < 0.1 and 0 < fair["control_rate"] < 1


def test_detection(mixed):
    schema, train, _, syn = mixed
    fair = detection_report(train, syn, schema, max_rows=800)
    assert fair["detection_auc"] < 0.62
    rng = np.random.default_rng(0)
    shuffled = train.apply(lambda col: col.to_numpy()[rng.permutation(len(col))])
    assert detection_report(train, shuffled, schema, max_rows=800)["detection_auc"] > 0.8
    copy = detection_report(train, train.copy(), schema, max_rows=800)
    assert copy["detection_auc"] == 0.5  # twins in train/test folds: AUC under 0.5, floored


def test_utility_classification_and_regression(mixed):
    schema, train, holdout, syn = mixed
    copy = utility_report(train, holdout, train.copy(), schema, "label")
    assert copy["task"] == "classification" and copy["metrics"]["tstr_ratio"] == pytest.approx(1.0)
    assert copy["metrics"]["trtr_score"] > 0.8
    fair = utility_report(train, holdout, syn, schema, "label")["metrics"]
    assert fair["tstr_ratio"] == pytest.approx(1.0, abs=0.1)
    rng = np.random.default_rng(0)
    noise = syn.copy()
    noise["x"], noise["y"] = rng.normal(size=len(noise)), rng.normal(size=len(noise))
    noise["grp"], noise["d"] = rng.choice(["hi", "lo"], len(noise)), rng.choice(list("abcd"), len(noise))
    noise["label"] = rng.choice(["pos", "neg"], len(noise))
    assert utility_report(train, holdout, noise, schema, "label")["metrics"]["tstr_ratio"] < 0.75
    reg = utility_report(train, holdout, syn, schema, "y")
    assert reg["task"] == "regression" and reg["metrics"]["tstr_ratio"] == pytest.approx(1.0, abs=0.1)
    noise_reg = utility_report(train, holdout, noise, schema, "y")["metrics"]
    assert noise_reg["tstr_ratio"] < 0.2


def test_utility_edge_cases(penguins):
    schema, train, holdout = penguins
    one_class = train.copy()
    one_class["species"] = "Adelie"
    out = utility_report(train, holdout, one_class, schema, "species")
    assert out["metrics"]["tstr_score"] == 0.0 and "fewer than two classes" in out["note"]
    assert out["metrics"]["trtr_score"] > 0.8
    # a target with missing values: those rows are dropped
    assert train["sex"].isna().any()
    assert utility_report(train, holdout, train, schema, "sex")["metrics"]["tstr_ratio"] == pytest.approx(1.0)
    assert utility_report(train, None, train, schema, "sex")["metrics"]["tstr_ratio"] is None


def test_privacy_filter(mixed):
    schema, train, holdout, _ = mixed
    syn = pd.concat([train.iloc[:10], holdout.iloc[:15]], ignore_index=True)
    kept, dropped = privacy_filter(syn, train, 1e-9, schema)
    assert dropped == 10 and kept.index.tolist() == list(range(10, 25))
    assert privacy_filter(syn, train, 0.0, schema)[1] == 0


def test_validate_synthetic_reports_trust_metrics(penguins):
    schema, train, holdout = penguins
    cfg = ValidateConfig(min={"quality_score": 0.6}, max={"exact_copy_rate": 0.01, "attribute_risk_sex": 0.5},
                         sensitive=["sex"])
    verdict, _ = validate_synthetic(train, train.copy(), schema, cfg, holdout=holdout)
    json.dumps(verdict, allow_nan=False)
    m = verdict["metrics"]
    for name in ("detection_auc", "tstr_ratio", "exact_copy_rate", "dcr_overfitting_share", "nndr",
                 "mia_auc", "attribute_risk", "attribute_risk_sex"):
        assert m[name] is not None, name
    assert not verdict["passed"]
    assert {c["name"] for c in verdict["checks"] if not c["passed"]} == {"exact_copy_rate", "attribute_risk_sex"}
    with pytest.raises(ConfigError, match="sensitive"):
        validate_synthetic(train, train, schema, ValidateConfig(sensitive=["nope"]), holdout=holdout)


def test_gate_separates_honest_copy_shuffled_and_noise(mixed):
    """The verdict on one structured table: an independent draw (a perfect synthesizer)
    passes; a copy fails on privacy, shuffled columns on pair trends and detection,
    uniform noise on column shapes."""
    schema, train, holdout, honest = mixed
    cfg = ValidateConfig(
        min={"quality_score": 0.6, "gx_success_rate": 0.8, "column_shapes": 0.85, "column_pair_trends": 0.85},
        max={"exact_copy_rate": 0.05, "dcr_overfitting_share": 0.6, "mia_auc": 0.75, "detection_auc": 0.7},
    )
    rng = np.random.default_rng(3)
    shuffled = train.apply(lambda col: col.to_numpy()[rng.permutation(len(col))]).astype(train.dtypes.to_dict())
    noise = train.copy()
    for spec in schema.columns:
        if spec.kind in ("continuous", "integer"):
            values = rng.uniform(spec.min, spec.max, len(train))
            noise[spec.name] = values.round() if spec.kind == "integer" else values
        elif spec.discrete:
            noise[spec.name] = rng.choice(np.array(spec.categories, dtype=object), len(train))
    noise = noise.astype(train.dtypes.to_dict())

    def failed(synthetic):
        verdict, _ = validate_synthetic(train, synthetic, schema, cfg, holdout=holdout)
        return {c["name"] for c in verdict["checks"] if not c["passed"]}

    assert failed(honest) == set()
    assert {"exact_copy_rate", "mia_auc"} <= failed(train.copy())
    assert {"column_pair_trends", "detection_auc"} <= failed(shuffled)
    assert "column_shapes" in failed(noise)
