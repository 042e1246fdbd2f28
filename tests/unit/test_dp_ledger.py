"""Unit tests of the DP claims that need no CLI: secret noise, one ledger, nothing fitted
on the real values under DP (imputation, levels, missing rates), bounds required, resume.

The attack through the CLI (regenerating the old ``seed + 2`` noise from a saved model) is
``tests/e2e/test_dp_attack.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from synthgen.config import PrivacyConfig, TabularModelConfig
from synthgen.data.schema import conform, infer_schema
from synthgen.data.structure import PUBLIC_KEYS, learn_structure, public_structure
from synthgen.errors import ConfigError
from synthgen.synthesizers.tabular_gan import TabularGANSynthesizer
from synthgen.training.callbacks import Callback, History
from synthgen.training.dp import CriticPrivacy
from synthgen.transformers.prepare import MISSING_SUFFIX, NAN, TablePreparer
from tests.tiny import TINY_GAN
from tests.tiny import KillAfter

TINY = {**TINY_GAN, "epochs": 1, "batch_size": 50}


@pytest.fixture(scope="module")
def planted():
    """200 rows: ``x`` in [0, 10] (median about 5) with a public range declared as
    [0, 1000] (midpoint 500) and 10% missing; ``c`` mostly ``"a"`` with 5% missing."""
    rng = np.random.default_rng(0)
    n = 200
    x = rng.uniform(0, 10, n)
    x[rng.random(n) < 0.1] = np.nan
    c = np.where(rng.random(n) < 0.8, "a", np.where(rng.random(n) < 0.5, "b", "z")).astype(object)
    c[rng.random(n) < 0.05] = None
    df = pd.DataFrame({"x": x, "c": c, "y": rng.normal(size=n)})
    schema = infer_schema(df)
    schema["x"].min, schema["x"].max = 0.0, 1000.0  # the declared public range
    return conform(df, schema), schema


def test_dp_imputation_uses_public_values_not_the_real_median_or_mode(planted):
    df, schema = planted
    missing_x, missing_c = df["x"].isna().to_numpy(), df["c"].isna().to_numpy()
    assert missing_x.any() and missing_c.any()
    real_median = float(df["x"].median())
    assert abs(real_median - 500.0) > 400  # the planted gap

    plain = TablePreparer(schema, joint_missing=False).fit(df)  # the non-private behaviour, for contrast
    assert plain.medians_["x"] == pytest.approx(real_median)
    assert (plain.transform(df)["c"].to_numpy()[missing_c] == "a").all()  # the real mode

    prep = TablePreparer(schema, joint_missing=False, private=True).fit(df)
    assert prep.medians_["x"] == 500.0  # the midpoint of the public bounds
    prepared = prep.transform(df)
    assert (prepared["x"].to_numpy()[missing_x] == 500.0).all()
    assert (prepared["c"].to_numpy()[missing_c] == NAN).all()  # its own level, not the mode
    # levels in sorted order (not by frequency), the missing level and the flag declared up front
    assert prep.kept_levels_["c"] == ["a", "b", "z", NAN]
    assert prep.missing_cols_ == ["x"] and f"x{MISSING_SUFFIX}" in prep.discrete_columns
    assert prep.public_levels()[f"x{MISSING_SUFFIX}"] == ["0", "1"]
    # missingness goes through the model, never re-inserted at the schema's real rate
    assert prep.models_missingness
    back = prep.inverse_transform(prepared.assign(**{f"x{MISSING_SUFFIX}": "0", "c": "a"}), np.random.default_rng(0))
    assert back["x"].notna().all() and back["c"].notna().all()


def test_dp_missing_rates_go_through_the_noisy_counts(planted, tmp_path):
    df, schema = planted
    real_rate = {"x": float(df["x"].isna().mean()), "c": float(df["c"].isna().mean())}
    model = TabularGANSynthesizer(schema, TabularModelConfig(**TINY), PrivacyConfig(epsilon=2.0)).fit(df)
    norm = model.normalizer_
    assert f"x{MISSING_SUFFIX}" in norm.discrete_columns_ and NAN in norm.levels_["c"]
    ledger = model.extra_meta()["privacy_ledger"]
    counts = ledger["releases"][0]
    assert counts["name"] == "level counts" and f"x{MISSING_SUFFIX}" in counts["what"]
    assert counts["l2_sensitivity"] == pytest.approx(np.sqrt(len(norm.discrete_columns_)))  # flags included
    model.save(tmp_path / "m")
    again = TabularGANSynthesizer.load(tmp_path / "m")
    for saved in (again.schema, again.preparer_.schema, model.schema):
        for col, rate in real_rate.items():
            assert saved[col].missing_rate != rate  # the released (noisy) share, not the real rate
        assert saved["c"].categories == sorted(saved["c"].categories, key=str)
    # the released share is the count release's, post-processed
    flag = norm.level_position(f"x{MISSING_SUFFIX}", "1") - norm.disc_start
    block = model.sampling_counts_[flag - 1 : flag + 1]
    assert again.schema["x"].missing_rate == pytest.approx(block[1] / block.sum() if block.sum() > 0 else 0.0)


def test_dp_numeric_column_without_public_bounds_is_a_config_error(planted):
    df, schema = planted
    bare = infer_schema(df)
    bare["y"].min = bare["y"].max = None
    with pytest.raises(ConfigError, match="'y'.*public bounds"):
        TabularGANSynthesizer(bare, TabularModelConfig(**TINY), PrivacyConfig(epsilon=2.0)).fit(df)
    TabularGANSynthesizer(bare, TabularModelConfig(**TINY)).fit(df)  # without DP: the observed range


def test_dp_too_many_levels_is_a_config_error_naming_the_column(planted):
    df, schema = planted
    with pytest.raises(ConfigError, match="'c'.*max_categories"):
        TabularGANSynthesizer(schema, TabularModelConfig(**TINY), PrivacyConfig(epsilon=2.0), max_categories=3).fit(df)


def test_count_noise_is_secret_charged_once_and_the_ledger_adds_up():
    def make() -> CriticPrivacy:
        return CriticPrivacy(2.0, None, 1.0, n_rows=1000, batch_size=100, planned_steps=50, n_discrete=3)

    counts = np.array([500.0, 300.0, 200.0, 900.0, 100.0, 1000.0])
    first, second = make(), make()
    released = first.noisy_counts(counts)
    assert not np.allclose(released, second.noisy_counts(counts))  # fresh entropy, same settings
    assert first.noisy_counts(counts) is released and len(first.accountant.history) == 1  # one release
    old_noise = torch.randn(len(counts), generator=torch.Generator().manual_seed(2), dtype=torch.float64).numpy()
    assert not np.allclose(released - old_noise * first.count_noise_std, counts)  # no seed recovers it
    first.accountant.history.append((first.noise_multiplier, first.sample_rate, 50))
    ledger = first.ledger([{"column": None, "what": "row count", "value": 1000, "source": "data.public_bounds"}])
    shares = [r["epsilon_share"] for r in ledger["releases"]]
    assert [r["name"] for r in ledger["releases"]] == ["level counts", "critic gradients"]
    assert sum(shares) == pytest.approx(ledger["epsilon_spent"]) and ledger["epsilon_spent"] <= 2.0
    assert ledger["releases"][0]["sigma"] == pytest.approx(first.histogram_noise * np.sqrt(3))
    assert ledger["reproducible"] is False and ledger["not_covered"]
    state = first.state_dict()
    assert set(state) == {"history", "counts_released", "released_counts"}  # no generator seed or state




def test_dp_resume_restores_the_accountant_and_the_release_not_the_noise(tmp_path):
    df = pd.read_csv("data/penguins.csv")
    schema = infer_schema(df)
    df = conform(df, schema)
    cfg = TabularModelConfig(**{**TINY_GAN, "epochs": 3, "checkpoint_every": 1})
    privacy = PrivacyConfig(epsilon=5.0)
    first = TabularGANSynthesizer(schema, cfg, privacy, checkpoint_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        first.fit(df, callbacks=[KillAfter(after=2)])  # killed after epoch 2, checkpoint at 2
    (saved,) = tmp_path.glob("checkpoint-*-000002.pt")  # checkpoint-<settings tag>-<epoch>.pt
    ckpt = torch.load(saved, weights_only=False)
    assert set(ckpt["rngs"]) == {"torch", "numpy"}  # no DP noise generator is checkpointed
    assert set(ckpt["privacy"]) == {"history", "counts_released", "released_counts"}
    history = History()
    second = TabularGANSynthesizer(schema, cfg, privacy, checkpoint_dir=tmp_path).fit(df, callbacks=[history])
    meta = second.extra_meta()
    assert meta["resumed_from"] == 2 and [r["epoch"] for r in history.rows] == [0, 1, 2]
    # the counts are the first run's release (kept in the checkpoint), charged once
    np.testing.assert_array_equal(second.sampling_counts_, first.sampling_counts_)
    releases = meta["privacy_ledger"]["releases"]
    assert [r["name"] for r in releases] == ["level counts", "critic gradients"]
    assert releases[1]["steps"] == 3 * second._steps_per_epoch(len(df), second.batch_)  # all 3 epochs counted
    assert 0 < meta["epsilon_spent"] <= 5.0 and meta["reproducible"] is False


def test_dp_keeps_only_the_public_part_of_the_value_structure(planted, tmp_path):
    """Under DP the point-mass values, decimals and bounds are declared public and listed in
    the ledger; the learned shares (real statistics) are neither used nor saved."""
    df, schema = planted
    df = df.copy()
    df.loc[df.index[:60], "y"] = 0.0  # a point mass
    schema = infer_schema(df)
    schema["x"].min, schema["x"].max = 0.0, 1000.0
    schema["y"].structure = learn_structure(df["y"], min_count=10)
    assert schema["y"].structure["point_mass_shares"] and schema["y"].structure["point_masses"] == [0.0]
    model = TabularGANSynthesizer(schema, TabularModelConfig(**TINY), PrivacyConfig(epsilon=2.0)).fit(df)
    items = [i for i in model.extra_meta()["privacy_ledger"]["public"] if i["what"] == "value structure"]
    assert items == [{"column": "y", "what": "value structure", "source": "data.public_bounds",
                      "value": public_structure(schema["y"].structure)}]
    model.save(tmp_path / "m")
    again = TabularGANSynthesizer.load(tmp_path / "m")
    for saved in (again.schema, again.preparer_.schema):
        assert set(saved["y"].structure) <= set(PUBLIC_KEYS)
    assert (again.sample(400, seed=1)["y"] == 0).any()  # the public point mass is still drawn exactly
