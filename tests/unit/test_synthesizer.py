"""The synthesizer interface, the table preparer and the ctgan backend (real training)."""

import io

import numpy as np
import pandas as pd
import pytest

import synthgen
from synthgen.config import ModelConfig, PrivacyConfig
from synthgen.data.schema import conform, infer_schema
from synthgen.errors import ConditionError, ModelError
from synthgen.synthesizers import REGISTRY
from synthgen.transformers.prepare import PATTERN_COLUMN, OTHER, TablePreparer
from tests.conftest import PENGUINS
from tests.tiny import TINY_TABLE

TINY = {k: v for k, v in TINY_TABLE.items() if k != "name"}


@pytest.fixture(scope="module")
def penguins():
    frame = pd.read_csv(PENGUINS)
    schema = infer_schema(frame)
    return schema, conform(frame, schema)


@pytest.fixture(scope="module")
def fitted(penguins):
    schema, frame = penguins
    return REGISTRY["ctgan"](schema, ModelConfig(name="ctgan", **TINY)).fit(frame)


def test_preparer_round_trip_restores_missing_dtypes_and_order(penguins):
    schema, frame = penguins
    frame = frame.dropna(subset=["bill_length_mm"]).reset_index(drop=True)  # a rare pattern is pooled
    frame.loc[frame.index[10:40], ["bill_length_mm", "body_mass_g"]] = np.nan  # a frequent pattern
    frame.loc[frame.index[50:65], "flipper_length_mm"] = np.nan  # and another one
    schema = infer_schema(frame)
    prep = TablePreparer(schema).fit(frame)
    prepared = prep.transform(frame)
    assert PATTERN_COLUMN in prepared and not prepared.select_dtypes("number").isna().any().any()
    assert sorted(map(sorted, prep.patterns_)) == [[], ["bill_length_mm", "body_mass_g"], ["flipper_length_mm"]]
    back = prep.inverse_transform(prepared, np.random.default_rng(0))
    assert list(back.columns) == list(frame.columns)
    assert (back.dtypes == frame.dtypes).all()
    pd.testing.assert_frame_equal(back.isna(), frame.isna())
    pd.testing.assert_frame_equal(back, frame, check_exact=False)


def test_preparer_pools_rare_levels_and_redraws_real_ones():
    rng = np.random.default_rng(0)
    levels = [f"city{i}" for i in range(3000)]
    frame = pd.DataFrame({"city": rng.choice(levels, 6000), "x": rng.normal(size=6000)})
    schema = infer_schema(frame)
    prep = TablePreparer(schema, max_categories=50).fit(frame)
    prepared = prep.transform(frame)
    assert prepared["city"].nunique() == 50 and (prepared["city"] == OTHER).any()
    back = prep.inverse_transform(prepared, np.random.default_rng(1))
    assert set(back["city"]) <= set(frame["city"])


def test_datetimes_and_integers_round_trip():
    frame = pd.DataFrame({
        "when": pd.date_range("2020-01-01", periods=40, freq="D"),
        "count": np.arange(40) * 7,
        "flag": [True, False] * 20,
    })
    schema = infer_schema(frame)
    model = REGISTRY["ctgan"](schema, ModelConfig(name="ctgan", **TINY)).fit(frame)
    out = model.sample(50, seed=0)
    assert (out.dtypes == frame.dtypes).all()
    assert (out["when"] == out["when"].dt.normalize()).all()
    assert out["count"].between(0, 273).all()


def test_ctgan_sample_contract(fitted, penguins):
    schema, frame = penguins
    out = fitted.sample(123, seed=3)
    assert len(out) == 123 and list(out.columns) == list(frame.columns)
    assert (out.dtypes == frame.dtypes).all()
    assert set(out["species"].dropna()) <= set(frame["species"])
    assert out["flipper_length_mm"].dropna().mod(1).eq(0).all()


def test_same_seed_same_bytes_and_save_load(fitted, tmp_path):
    first, second = io.BytesIO(), io.BytesIO()
    fitted.sample(200, seed=7).to_parquet(first)
    fitted.sample(200, seed=7).to_parquet(second)
    assert first.getvalue() == second.getvalue()
    assert not fitted.sample(200, seed=8).equals(fitted.sample(200, seed=7))
    fitted.save(tmp_path / "model")
    again = synthgen.load(tmp_path / "model", allow_unvalidated=True)  # a bare directory: no verdict beside it
    pd.testing.assert_frame_equal(again.sample(200, seed=7), fitted.sample(200, seed=7))


def test_fit_is_deterministic(penguins):
    schema, frame = penguins
    outs = [REGISTRY["ctgan"](schema, ModelConfig(name="ctgan", **TINY)).fit(frame).sample(50, seed=1) for _ in range(2)]
    pd.testing.assert_frame_equal(*outs)


def test_conditions_by_rejection_are_exact(fitted):
    out = fitted.sample(40, conditions={"island": "Dream"}, seed=0)
    assert len(out) == 40 and (out["island"] == "Dream").all()
    for seed in range(5):  # bill_depth_mm has missing values: a conditioned cell is never blanked
        ranged = fitted.sample(300, conditions={"bill_depth_mm": (15.0, 20.0)}, seed=seed)
        assert ranged["bill_depth_mm"].between(15, 20).all()


@pytest.mark.parametrize(
    ("conditions", "fragment"),
    [
        ({"nope": 1}, "unknown column 'nope'"),
        ({"island": "Atlantis"}, "never had the value 'Atlantis'"),
        ({"bill_depth_mm": (500, 600)}, "outside the training range"),
    ],
)
def test_bad_conditions(fitted, conditions, fragment):
    with pytest.raises(ConditionError, match=fragment):
        fitted.sample(5, conditions=conditions)


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_bad_row_counts(fitted, n):
    with pytest.raises(ConditionError, match="positive integer"):
        fitted.sample(n)


def test_misuse_errors(penguins, tmp_path):
    schema, _ = penguins
    with pytest.raises(ModelError, match="not fitted"):
        REGISTRY["ctgan"](schema).sample(3)
    with pytest.raises(ModelError, match="has no differential privacy"):
        REGISTRY["ctgan"](schema, ModelConfig(name="ctgan"), PrivacyConfig(epsilon=1.0))
    with pytest.raises(ModelError, match="not a synthgen model directory"):
        synthgen.load(tmp_path)


def test_independent_missingness_comes_back_at_the_training_rate():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": np.where(rng.random(4000) < 0.2, np.nan, rng.normal(size=4000)),
                          "c": np.where(rng.random(4000) < 0.1, None, rng.choice(["a", "b"], 4000))})
    schema = infer_schema(frame)
    prep = TablePreparer(schema, joint_missing=False).fit(frame)
    prepared = prep.transform(frame)
    assert list(prepared.columns) == ["x", "c"] and set(prepared["c"]) == {"a", "b"}
    back = prep.inverse_transform(prepared, np.random.default_rng(1))
    assert back["x"].isna().mean() == pytest.approx(0.2, abs=0.02)
    assert back["c"].isna().mean() == pytest.approx(0.1, abs=0.02)


def test_ctgan_models_load_in_parallel_threads(fitted, tmp_path):
    """torch's safe_globals list is process-wide: threads loading ctgan models at once (a
    threaded sweep) must not end each other's allow-list mid-load."""
    import threading

    fitted.save(tmp_path / "model")
    errors = []

    def load_many():
        try:
            for _ in range(15):
                synthgen.load(tmp_path / "model", allow_unvalidated=True)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=load_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
