"""Value structure (issue 15): point masses, value grids, day-granular dates and columns
missing together survive ingest -> prepare -> decode, and a real run through the CLI.

The table: ``amount`` is 30% exact zeros, on a 10-step grid below 1,000 and a 50-step
grid above; ``debt`` 60% exact zeros, else two decimals; ``opened`` day-granular dates;
``income`` and ``assets`` missing together in 15% of rows; a category tied to amount;
``loan`` never above ``price`` (an order the ranges alone do not imply).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthgen.config import DataConfig
from synthgen.data.ingest import ingest
from synthgen.data.structure import learn_structure, snap
from synthgen.errors import ConfigError, DataError
from synthgen.transformers.mode_normalizer import ModeNormalizer
from synthgen.transformers.prepare import PATTERN_COLUMN, TablePreparer
from tests.conftest import tiny_params, write_params
from tests.tiny import TINY_GAN

N = 3000


def structured_table(n: int = N, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    big = rng.random(n) < 0.5
    amount = np.where(big, rng.integers(21, 200, n) * 50, rng.integers(1, 100, n) * 10).astype(float)
    amount[rng.random(n) < 0.3] = 0.0
    debt = np.round(rng.gamma(2.0, 300.0, n), 2)
    debt[rng.random(n) < 0.6] = 0.0
    income = np.round(rng.lognormal(4, 0.5, n))
    assets = np.round(rng.gamma(2.0, 2000.0, n), -2)
    gone = rng.random(n) < 0.15
    income[gone] = np.nan
    assets[gone] = np.nan
    opened = pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.integers(0, 900, n), "D")
    price = np.round(rng.lognormal(7, 0.4, n))
    loan = np.floor(price * rng.uniform(0.3, 1.0, n))
    return pd.DataFrame({"amount": amount, "debt": debt, "income": income, "assets": assets,
                         "opened": opened, "tier": np.where(amount >= 1000, "high", "low"),
                         "price": price, "loan": loan})


def on_grid(amount: pd.Series) -> bool:
    x = amount.dropna()
    return bool(((x[x >= 1000] % 50) == 0).all() and ((x[x < 1000] % 10) == 0).all())


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    path = tmp_path_factory.mktemp("structure") / "loans.csv"
    structured_table().to_csv(path, index=False)
    schema, train, holdout = ingest(DataConfig(path=str(path), target="tier"))
    return path, schema, train


def test_ingest_learns_masses_grid_and_dates(ingested):
    _, schema, train = ingested
    amount, debt = schema["amount"].structure, schema["debt"].structure
    assert amount["point_masses"] == [0.0] and amount["decimals"] == 0
    assert abs(amount["point_mass_shares"][0] - (train["amount"] == 0).mean()) < 1e-6
    assert debt["point_masses"][0] == 0.0 and debt["decimals"] == 2
    assert schema["opened"].resolution == "D" and schema["opened"].structure is None
    assert schema["tier"].structure is None  # categories have levels, not a structure
    assert schema["loan"].structure["at_most"] == "price"
    assert all("at_most" not in (schema[c].structure or {}) for c in ("amount", "debt", "income", "price"))


def test_common_values_of_a_smooth_column_are_not_point_masses():
    rng = np.random.default_rng(1)
    ages = pd.Series(np.round(rng.normal(40, 8, 4000)))  # every age is common, none a spike
    assert learn_structure(ages, min_count=10)["point_masses"] == []
    ages[:400] = 99  # a code held by 10% of rows
    assert learn_structure(ages, min_count=10)["point_masses"] == [99.0]


def jittered_round_trip(schema, train, seed: int = 0) -> pd.DataFrame:
    """A stand-in for a generator that learned the prepared rows perfectly: the prepared
    rows (point-mass states and missingness patterns as they are) with their numbers
    jittered, so decoding has to put them back on the grid."""
    prep = TablePreparer(schema).fit(train)
    prepared = prep.transform(train)
    rng = np.random.default_rng(seed)
    for column in ("amount", "debt", "income", "assets"):
        prepared[column] = prepared[column] + rng.normal(0, 0.05 * prepared[column].std(), len(prepared))
    prepared["opened"] = prepared["opened"] + rng.normal(0, 5 * 3600, len(prepared))
    return prep.inverse_transform(prepared, rng)


def test_round_trip_keeps_point_mass_shares_grid_dates_and_joint_missingness(ingested):
    _, schema, train = ingested
    out = jittered_round_trip(schema, train)
    n = len(train)
    for column in ("amount", "debt"):
        real, synthetic = (train[column] == 0).mean(), (out[column] == 0).mean()
        assert abs(real - synthetic) < 3 * np.sqrt(real * (1 - real) / n), column
    assert on_grid(out["amount"])
    assert np.allclose(out["debt"].dropna() * 100, np.round(out["debt"].dropna() * 100))
    assert ((out["opened"] - out["opened"].dt.normalize()) == pd.Timedelta(0)).all()
    pd.testing.assert_series_equal(out["income"].isna(), out["assets"].isna(), check_names=False)
    assert out["income"].isna().mean() == pytest.approx(train["income"].isna().mean())
    assert (out["loan"] <= out["price"]).all()
    # the grid keeps how often values are round, not just that they are on it
    big_real, big_syn = train["amount"][train["amount"] >= 1000], out["amount"][out["amount"] >= 1000]
    assert abs((big_real % 100 == 0).mean() - (big_syn % 100 == 0).mean()) < 0.05


def test_missing_together_is_one_pattern_column(ingested):
    _, schema, train = ingested
    prep = TablePreparer(schema).fit(train)
    assert sorted(map(sorted, prep.patterns_)) == [[], ["assets", "income"]]
    assert PATTERN_COLUMN in prep.discrete_columns and not any(c.endswith("__missing") for c in prep.columns)


def test_snap_keeps_the_mean_and_does_not_pile_on_grid_points():
    rng = np.random.default_rng(3)
    real = pd.Series(rng.integers(20, 200, 5000) * 50.0)
    structure = learn_structure(real, min_count=10**6)  # no point masses: only the grid
    values = rng.uniform(1000, 9950, 40_000)
    snapped = snap(values, structure, rng, low=1000, high=9950)
    assert (snapped % 50 == 0).all()
    assert abs(snapped.mean() - values.mean()) < 5  # random rounding: no drift
    counts = pd.Series(snapped).value_counts()
    assert counts.max() < 3 * counts.median()  # no grid point collects the neighbours' mass


def test_structure_overrides_are_checked_before_work(tmp_path):
    path = tmp_path / "t.csv"
    structured_table(200).to_csv(path, index=False)
    with pytest.raises(ConfigError, match="data.structure: column 'nope'"):
        ingest(DataConfig(path=str(path), structure={"nope": "off"}))
    with pytest.raises(ConfigError, match="column 'tier' is categorical; .*a category takes only 'off'"):
        ingest(DataConfig(path=str(path), structure={"tier": {"decimals": 1}}))
    with pytest.raises(ValueError, match="point_masses"):
        DataConfig(path=str(path), structure={"amount": {"point_masses": "zero"}})
    schema, _, _ = ingest(DataConfig(path=str(path), structure={"amount": "off", "debt": {"point_masses": [0, -1]}}))
    assert schema["amount"].structure is None and schema["debt"].structure["point_masses"] == [0.0, -1.0]
    with pytest.raises(DataError, match="price.at_most: 'price' must be >= 0 and at most 'loan'"):
        ingest(DataConfig(path=str(path), structure={"price": {"at_most": "loan"}}))


def test_cli_run_keeps_structure_across_the_process_boundary(ingested, tmp_path):
    """``synthgen run`` (a real, short training), then ``synthgen sample`` from the saved
    model in a new process: every value on its grid, dates on days, columns missing
    together, point masses present; validation explains detection per column."""
    path, _, _ = ingested
    params = tiny_params(tmp_path, None, data={"path": str(path), "target": "tier"},
                         model={**TINY_GAN, "epochs": 3}, generate={"rows": 1500})
    params["tracking"] = {"uri": None, "registered_model": None}
    params_file = write_params(tmp_path / "params.yaml", params)
    run = subprocess.run([sys.executable, "-m", "synthgen", "run", "--params", str(params_file)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    out = Path(params["output"]["dir"])
    sampled = tmp_path / "sampled.csv"
    draw = subprocess.run([sys.executable, "-m", "synthgen", "sample", "--model", str(out / "model"),
                           "--rows", "2000", "--out", str(sampled), "--allow-unvalidated"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert draw.returncode == 0, draw.stderr[-2000:]
    for synthetic in (pd.read_parquet(out / "synthetic.parquet"), pd.read_csv(sampled)):
        assert on_grid(synthetic["amount"])
        assert (synthetic["amount"] == 0).any() and (synthetic["debt"] == 0).any()
        pd.testing.assert_series_equal(synthetic["income"].isna(), synthetic["assets"].isna(), check_names=False)
        assert (synthetic["loan"] <= synthetic["price"]).all()
        opened = pd.to_datetime(synthetic["opened"])
        assert ((opened - opened.dt.normalize()) == pd.Timedelta(0)).all()
    detection = json.loads((out / "validation.json").read_text())["detection"]
    assert set(detection["columns"]) >= {"amount", "debt", "income", "assets", "opened", "tier"}
    assert all(0.5 <= auc <= 1.0 for auc in detection["columns"].values())
    assert {f["column"] for f in detection["top_features"]} == set(detection["columns"])


def test_a_category_fixed_by_another_column_keeps_the_rule(tmp_path):
    """``nodeg`` is 1 exactly when ``educ`` < 12: ingest learns the rule and decoding sets
    ``nodeg`` from the generated ``educ``, whatever the generator drew for ``nodeg``."""
    rng = np.random.default_rng(5)
    educ = rng.choice(np.arange(4, 18), 2000)
    frame = pd.DataFrame({"educ": educ, "nodeg": (educ < 12).astype(int), "x": rng.normal(size=2000)})
    path = tmp_path / "school.csv"
    frame.to_csv(path, index=False)
    schema, train, _ = ingest(DataConfig(path=str(path)))
    assert schema["nodeg"].structure == {"determined_by": "educ", "thresholds": [11.5], "levels": ["1", "0"]}
    prep = TablePreparer(schema).fit(train)
    prepared = prep.transform(train)
    prepared["nodeg"] = rng.permutation(prepared["nodeg"].to_numpy())  # a generator that broke the rule
    prepared["educ"] = prepared["educ"] + rng.normal(0, 2, len(prepared))
    out = prep.inverse_transform(prepared, rng)
    assert ((out["educ"] < 12).astype(int) == out["nodeg"]).all()
    off, _, _ = ingest(DataConfig(path=str(path), structure={"nodeg": "off"}))
    assert off["nodeg"].structure is None


def test_point_masses_are_modes_of_the_normalizer(ingested):
    """tabular_gan's normalizer gives each point mass a mode: exact on the way back, kept
    in its saved JSON, and the preparer adds no state column for it."""
    _, schema, train = ingested
    prep = TablePreparer(schema, point_states=False).fit(train)
    prepared = prep.transform(train)
    assert not any(c.endswith("__point") for c in prepared) and prep.model_masses["amount"] == [0.0]
    norm = ModeNormalizer().fit(prepared, prep.discrete_columns, point_masses=prep.model_masses)
    encoded = norm.transform(prepared, np.random.default_rng(0))
    back = norm.decode_hot(encoded.alpha, encoded.hot)
    zero = (prepared["amount"] == 0).to_numpy()
    assert (back["amount"].to_numpy()[zero] == 0).all() and (back["amount"].to_numpy()[~zero] != 0).mean() > 0.99
    again = ModeNormalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert again.point_masses_ == norm.point_masses_ and again.width == norm.width
    out = prep.inverse_transform(back, np.random.default_rng(1))
    assert abs((out["amount"] == 0).mean() - zero.mean()) < 1e-9 and on_grid(out["amount"])
