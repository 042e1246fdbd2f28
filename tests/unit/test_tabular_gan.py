"""Unit tests of ``model.name: tabular_gan``: tiny networks, a few epochs, fixed seeds."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch

from synthgen.config import PrivacyConfig, TabularModelConfig
from synthgen.data.schema import conform, infer_schema
from synthgen.errors import ConditionError, ConfigError
from synthgen.synthesizers import REGISTRY
from synthgen.synthesizers.tabular_gan import TabularGANSynthesizer
from synthgen.training.callbacks import Callback, History
from synthgen.transformers.mode_normalizer import ModeNormalizer
from tests.tiny import TINY_GAN
from tests.tiny import KillAfter

TINY = {**TINY_GAN, "epochs": 3, "lr": 1e-3}


@pytest.fixture(scope="module")
def penguins():
    df = pd.read_csv("data/penguins.csv")
    schema = infer_schema(df)
    return conform(df, schema), schema


@pytest.fixture(scope="module")
def fitted(penguins):
    df, schema = penguins
    return TabularGANSynthesizer(schema, TabularModelConfig(**TINY)).fit(df)


def _parquet(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def test_registered_and_round_trip_dtypes(fitted, penguins, tmp_path):
    df, _ = penguins
    assert REGISTRY["tabular_gan"] is TabularGANSynthesizer
    out = fitted.sample(120, seed=1)
    assert len(out) == 120
    assert list(out.columns) == list(df.columns)
    assert out.dtypes.to_dict() == df.dtypes.to_dict()
    assert out["species"].dropna().isin(df["species"].unique()).all()
    fitted.save(tmp_path / "model")
    again = TabularGANSynthesizer.load(tmp_path / "model")
    assert _parquet(again.sample(50, seed=3)) == _parquet(fitted.sample(50, seed=3))


def test_normalizer_round_trip(penguins):
    df, schema = penguins
    from synthgen.transformers.prepare import TablePreparer

    prep = TablePreparer(schema).fit(df)
    frame = prep.transform(df)
    norm = ModeNormalizer().fit(frame, prep.discrete_columns)
    enc = norm.transform(frame, np.random.default_rng(0))
    back = norm.inverse_transform(enc.dense())
    for col in norm.continuous_columns_:
        # alpha is clipped at +-0.99, i.e. within 3.96 sigma of a mode: exact for these data
        assert np.allclose(back[col], frame[col], rtol=1e-5, atol=1e-3)
    for col in norm.discrete_columns_:
        assert (back[col] == frame[col].astype(str)).all()
    assert norm.spans[0].kind == "alpha" and norm.width == norm.spans[-1].start + norm.spans[-1].size


def test_same_seed_byte_identical(penguins):
    df, schema = penguins
    a = TabularGANSynthesizer(schema, TabularModelConfig(**TINY)).fit(df).sample(100, seed=7)
    b = TabularGANSynthesizer(schema, TabularModelConfig(**TINY)).fit(df).sample(100, seed=7)
    assert _parquet(a) == _parquet(b)


def test_conditions_exact(fitted):
    one = fitted.sample(80, conditions={"species": "Chinstrap"}, seed=1)
    assert len(one) == 80 and (one["species"] == "Chinstrap").all()
    two = fitted.sample(60, conditions={"species": "Gentoo", "island": "Dream"}, seed=2)  # never co-occur
    assert len(two) == 60 and (two["species"] == "Gentoo").all() and (two["island"] == "Dream").all()
    rng = fitted.sample(70, conditions={"body_mass_g": (4000, 4200), "sex": "male"}, seed=3)
    assert len(rng) == 70 and rng["body_mass_g"].between(4000, 4200).all() and (rng["sex"] == "male").all()
    with pytest.raises(ConditionError):
        fitted.sample(10, conditions={"species": "Emperor"})
    with pytest.raises(ConditionError):
        fitted.sample(10, conditions={"wingspan": 3})


def test_single_class_condition_column(penguins):
    df, _ = penguins
    df = df.assign(colony=np.where(np.arange(len(df)) >= 0, "A", "B"))
    schema = infer_schema(df)
    schema["colony"].kind, schema["colony"].categories = "categorical", ["A"]
    model = TabularGANSynthesizer(schema, TabularModelConfig(**{**TINY, "epochs": 1})).fit(conform(df, schema))
    out = model.sample(30, conditions={"colony": "A"}, seed=0)
    assert (out["colony"] == "A").all()
    with pytest.raises(ConditionError):
        model.sample(5, conditions={"colony": "B"})


def test_bad_input(penguins):
    df, schema = penguins
    with pytest.raises(ConfigError):
        TabularGANSynthesizer(schema, TabularModelConfig(**{**TINY, "batch_size": 5000})).fit(df)
    with pytest.raises(Exception):  # pydantic refuses epsilon <= 0 at the config edge
        PrivacyConfig(epsilon=0)
    from synthgen.training.dp import CriticPrivacy

    with pytest.raises(ConfigError):
        CriticPrivacy(epsilon=-1.0, delta=None, max_grad_norm=1.0, n_rows=100, batch_size=10, planned_steps=10)


def test_dp_budget_stop(penguins):
    df, schema = penguins
    privacy = PrivacyConfig(epsilon=5.0, noise_multiplier=1.5)
    model = TabularGANSynthesizer(schema, TabularModelConfig(**{**TINY, "epochs": 50}), privacy)
    history = History()
    model.fit(df, callbacks=[history])
    meta = model.extra_meta()
    assert meta["stopped_early"] and 0 < meta["epochs_run"] < 50
    assert 0 < meta["epsilon_spent"] <= 5.0
    eps = [row["epsilon"] for row in history.rows]
    assert eps == sorted(eps) and eps[-1] <= 5.0
    assert len(model.sample(20, seed=0)) == 20


def test_dp_calibrated_spends_budget(penguins):
    df, schema = penguins
    model = TabularGANSynthesizer(schema, TabularModelConfig(**{**TINY, "epochs": 4}), PrivacyConfig(epsilon=3.0))
    model.fit(df)
    meta = model.extra_meta()
    assert meta["epochs_run"] == 4 and not meta["stopped_early"]
    assert 2.0 < meta["epsilon_spent"] <= 3.0




# DP runs are not bit-reproducible (secret noise): their resume is tested in tests/unit/test_dp_ledger.py
@pytest.mark.parametrize("private", [False])
def test_resume_after_kill_is_exact(penguins, tmp_path, private):
    df, schema = penguins
    cfg = TabularModelConfig(**{**TINY, "epochs": 6, "checkpoint_every": 2})
    privacy = PrivacyConfig(epsilon=5.0) if private else None
    ref = TabularGANSynthesizer(schema, cfg, privacy).fit(df).sample(60, seed=5)

    first = TabularGANSynthesizer(schema, cfg, privacy, checkpoint_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        first.fit(df, callbacks=[KillAfter(after=3)])  # killed after epoch 3, checkpoint at 2
    assert [p.name[-9:] for p in tmp_path.iterdir()] == ["000002.pt"]  # checkpoint-<settings tag>-<epoch>.pt
    history = History()
    second = TabularGANSynthesizer(schema, cfg, privacy, checkpoint_dir=tmp_path).fit(df, callbacks=[history])
    assert second.extra_meta()["resumed_from"] == 2
    assert [r["epoch"] for r in history.rows] == [0, 1, 2, 3, 4, 5]  # the checkpoint's epochs, then the new ones
    assert _parquet(second.sample(60, seed=5)) == _parquet(ref)


def test_high_cardinality_is_compact():
    rng = np.random.default_rng(0)
    n = 3000
    df = pd.DataFrame({"code": [f"c{i}" for i in rng.integers(0, 2000, n)], "x": rng.normal(size=n)})
    schema = infer_schema(df)
    schema["code"].kind = "categorical"
    model = TabularGANSynthesizer(schema, TabularModelConfig(**{**TINY, "epochs": 1}), max_categories=5000)
    model.fit(conform(df, schema))
    assert model.normalizer_.cond_width > 1000
    assert len(model.sample(10, conditions={"code": df["code"].iloc[0]}, seed=0)) == 10
    assert torch.get_default_dtype() == torch.float32


def test_wide_critic_lookup_equals_dense():
    """The lookup critic (one-hot entries read as weight rows) == the dense critic."""
    from synthgen.synthesizers.tabular_gan import Critic, WideCritic

    row, c, pac, b = 23, 3, 5, 20  # 3 alpha entries, then one-hot positions
    dense = Critic(row, [16, 8], pac, 0.5, torch.Generator().manual_seed(0)).eval()
    wide = WideCritic(row, [16, 8], pac, 0.5, torch.Generator().manual_seed(0)).eval()
    assert torch.equal(wide.first_weight, dense.seq[0].weight.t())
    g = torch.Generator().manual_seed(1)
    alpha = torch.rand(b, c, generator=g) * 2 - 1
    idx = torch.stack([torch.randint(c, 10, (b,), generator=g), torch.randint(10, 16, (b,), generator=g),
                       torch.randint(16, row, (b,), generator=g)], dim=1)
    x = torch.zeros(b, row)
    x[:, :c] = alpha
    x.scatter_(1, idx, 1.0)
    torch.testing.assert_close(wide.forward_mixed(alpha, idx), dense(x))
    torch.testing.assert_close(wide(x), dense(x))
    # a dense prefix as wide as the generated part, the rest by lookup (fake rows)
    soft = torch.softmax(torch.randn(b, 16, generator=g), dim=1)
    xf = torch.cat([soft, torch.zeros(b, row - 16)], dim=1)
    xf.scatter_(1, idx[:, 2:], 1.0)
    out_w, out_d = wide.forward_mixed(soft, idx[:, 2:]), dense(xf)
    torch.testing.assert_close(out_w, out_d)
    out_w.sum().backward()
    out_d.sum().backward()
    torch.testing.assert_close(wide.first_weight.grad, dense.seq[0].weight.grad.t())


@pytest.mark.parametrize("variant", ["logistic", "wgan-gp", "dp"])
def test_wide_mode_end_to_end(penguins, tmp_path, variant):
    df, schema = penguins
    privacy = PrivacyConfig(epsilon=5.0) if variant == "dp" else None
    model = TabularGANSynthesizer(schema, TabularModelConfig(**{**TINY, "epochs": 2}), privacy)
    model.options.wide_min_levels = 2  # force the wide path on a small table
    if variant == "wgan-gp":
        model.options.loss, model.options.gp_every = "wgan-gp", 1
    model.fit(df)
    assert model.generator_.cond_embed is not None
    out = model.sample(40, conditions={"species": "Gentoo"}, seed=2)
    assert len(out) == 40 and (out["species"] == "Gentoo").all()
    model.save(tmp_path / "m")
    again = TabularGANSynthesizer.load(tmp_path / "m")
    assert _parquet(again.sample(30, seed=3)) == _parquet(model.sample(30, seed=3))


def test_unset_epochs_become_the_step_budget_with_a_floor_of_passes():
    """``model.epochs`` unset: 3000 steps' worth, at least 60 epochs; an explicit value stays."""
    import pandas as pd

    from synthgen.config import TabularModelConfig
    from synthgen.data.schema import infer_schema
    from synthgen.synthesizers.tabular_gan import MIN_EPOCHS, STEP_BUDGET, TabularGANSynthesizer
    from tests.conftest import PENGUINS

    schema = infer_schema(pd.read_csv(PENGUINS))

    def resolved(rows, **model):
        synth = TabularGANSynthesizer(schema, TabularModelConfig(name="tabular_gan", **model))
        synth._resolve_config(rows)
        return synth.config.epochs

    assert resolved(275) == STEP_BUDGET  # one full batch of 270 rows per epoch
    assert resolved(53_940) == MIN_EPOCHS  # 107 steps per epoch: 29 epochs would reach the budget
    assert resolved(5_000) == 300  # 10 steps per epoch
    assert resolved(53_940, epochs=5) == 5
