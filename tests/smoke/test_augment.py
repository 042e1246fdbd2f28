"""The augment stage: real training (a few epochs), the real CLI, a real MLflow store,
a real Prefect flow run; rebalancing counts, provenance, holdout untouched, benefit."""

import json
import shutil

import pandas as pd
import pytest

import synthgen
from click.testing import CliRunner
from mlflow import MlflowClient

from synthgen import stages
from synthgen.stages.augment_common import SOURCE_COLUMN, AugmentLayout, class_counts, plan_rows
from synthgen.validation.benefit import METRICS
from synthgen.cli import cli
from synthgen.config import AugmentConfig, parse_params
from synthgen.io import data_digest
from synthgen.errors import DataError
from synthgen.stages.common import Layout
from tests.conftest import tiny_params, write_params
from tests.tiny import TINY_GAN

TINY_GAN = {**TINY_GAN, "epochs": 3}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mlflow_template):
    """ingest + train (tabular_gan, 3 epochs) once; tests copy the output dir they change."""
    tmp = tmp_path_factory.mktemp("augment")
    shutil.copy(mlflow_template, tmp / "mlflow.db")
    raw = tiny_params(tmp, f"sqlite:///{tmp / 'mlflow.db'}", model=TINY_GAN)
    params = parse_params(raw)
    stages.ingest(params)
    stages.train(params)
    return tmp, raw


def _copy(trained, tmp_path, **sections):
    """The trained run's params and outputs, copied under ``tmp_path`` (tracking off)."""
    src, raw = trained
    shutil.copytree(src / "out", tmp_path / "out", ignore=shutil.ignore_patterns("tracking.json", "augment"))
    raw = json.loads(json.dumps(raw))
    raw["output"]["dir"] = str(tmp_path / "out")
    raw["tracking"]["uri"] = None
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return raw


def test_plan_rows_rebalance_and_enlarge():
    counts = {"a": 100, "b": 40, "c": 7}
    assert plan_rows(counts, AugmentConfig(mode="rebalance", ratio=1.0)) == {"a": 0, "b": 60, "c": 93}
    assert plan_rows(counts, AugmentConfig(mode="rebalance", ratio=0.5)) == {"a": 0, "b": 10, "c": 43}
    assert plan_rows(counts, AugmentConfig(mode="rebalance", ratio=1.5)) == {"a": 50, "b": 110, "c": 143}
    enlarge = plan_rows(counts, AugmentConfig(mode="enlarge", factor=1.5))
    assert sum(enlarge.values()) == round(0.5 * 147) == 74  # exact total, largest remainders
    assert enlarge == {"a": 50, "b": 20, "c": 4}
    assert sum(plan_rows(counts, AugmentConfig(mode="enlarge", factor=1.0)).values()) == 0


def test_cli_writes_augmented_data_manifest_benefit_and_tracks(trained):
    tmp, raw = trained
    layout, out = Layout(tmp / "out"), AugmentLayout(tmp / "out")
    holdout_before = data_digest(layout.holdout)
    params_file = write_params(tmp / "params.yaml", raw)
    result = CliRunner().invoke(cli, ["augment", "--params", str(params_file)])
    assert result.exit_code == 0, result.output
    assert "balanced-accuracy lift" in result.stdout
    assert "the generator's own synthetic data: not validated" in result.stdout  # trained, never validated

    assert data_digest(layout.holdout) == holdout_before  # the holdout is untouched
    train = pd.read_parquet(layout.train)
    augmented = pd.read_parquet(out.augmented)
    assert list(augmented.columns) == [*train.columns, SOURCE_COLUMN]
    real = augmented[augmented[SOURCE_COLUMN] == "real"].drop(columns=SOURCE_COLUMN).reset_index(drop=True)
    pd.testing.assert_frame_equal(real, train.reset_index(drop=True))  # the real rows, unchanged
    assert set(augmented[SOURCE_COLUMN]) == {"real", "synthetic"}
    assert (augmented.drop(columns=SOURCE_COLUMN).dtypes == train.dtypes).all()
    before = class_counts(train["species"])
    after = class_counts(augmented["species"])
    majority = max(before.values())
    assert set(after.values()) == {majority} and set(after) == set(before)  # ratio 1.0: exact

    manifest = json.loads(out.manifest.read_text())
    assert manifest["holdout_hash"] == holdout_before and manifest["train_hash"] == data_digest(layout.train)
    assert manifest["rows"]["synthetic"] == (augmented[SOURCE_COLUMN] == "synthetic").sum()
    for cls, entry in manifest["classes"].items():
        assert entry == {"before": before[cls], "added": majority - before[cls], "after": majority}
    for key in ("model", "model_hash", "seed", "params_hash", "source_data_hash", "augmented_hash", "mlflow_run_id"):
        assert manifest[key] is not None, key
    assert manifest["augmented_hash"] == data_digest(out.augmented)

    benefit = json.loads(out.benefit.read_text())
    assert benefit["measured"] and benefit["minority"] == "Chinstrap" and benefit["protocol"]["repeats"] == 2
    assert len(benefit["records"]) == 2 * 2 * 3  # repeats x models x arms
    for model in ("logistic", "random_forest"):
        for metric in METRICS:
            entry = benefit["models"][model][metric]
            for arm in ("real", "augmented", "reweighted"):
                assert 0 <= entry[arm]["mean"] <= 1 and entry[arm]["n"] == 2
            lift = entry["lift"]
            assert lift["min"] <= lift["mean"] <= lift["max"] and lift["sd"] >= 0
            assert lift["mean"] == pytest.approx(entry["augmented"]["mean"] - entry["real"]["mean"])
    assert set(benefit["overall"]) == set(METRICS)

    sheet = out.datasheet.read_text()
    lift = benefit["models"]["random_forest"]["minority_recall"]["lift"]
    assert f"| random_forest | minority_recall |" in sheet and f"{lift['mean']:+.3f} ± {lift['sd']:.3f}" in sheet

    page = out.report.read_text()
    assert page.count('src="data:image/png;base64,') == 2 and "Chinstrap" in page
    assert "The generator's own synthetic data: <b>not validated" in page

    run = MlflowClient(tracking_uri=raw["tracking"]["uri"]).get_run(manifest["mlflow_run_id"])
    assert "augment_lift_balanced_accuracy_mean" in run.data.metrics
    assert "augment_logistic_real_macro_f1" in run.data.metrics
    artifacts = {a.path for a in MlflowClient(tracking_uri=raw["tracking"]["uri"]).list_artifacts(
        manifest["mlflow_run_id"], "augment")}
    assert {"augment/manifest.json", "augment/benefit.json", "augment/report.html", "augment/DATASHEET.md"} <= artifacts


@pytest.mark.parametrize("ratio", [0.5, 1.3])
def test_rebalance_reaches_requested_counts_and_reproduces(trained, tmp_path, ratio):
    params = parse_params(_copy(trained, tmp_path, augment={"ratio": ratio, "benefit": False}))
    manifest = stages.augment(params)
    out = AugmentLayout(params.out)
    train = pd.read_parquet(Layout(params.out).train)
    before = class_counts(train["species"])
    goal = int(ratio * max(before.values()) + 0.5)
    after = class_counts(pd.read_parquet(out.augmented)["species"])
    assert after == {c: max(n, goal) for c, n in before.items()}
    assert json.loads(out.benefit.read_text()) == {"measured": False}
    first = data_digest(out.augmented)
    stages.augment(params)  # same params and seed: the same bytes
    assert data_digest(out.augmented) == first == manifest["augmented_hash"]


def test_load_dataset_reads_the_augmented_set_with_its_generator_verdict(trained, tmp_path):
    raw = _copy(trained, tmp_path, augment={"benefit": False})
    params = parse_params(raw)
    out = AugmentLayout(params.out)
    manifest = stages.augment(params)  # the model's own data was never validated
    assert manifest["dataset"] == "augmented" and manifest["generator_validation"] is None
    ds = synthgen.load_dataset(out.dir)  # loads, with a warning
    assert ds.augmented and not ds.passed
    pd.testing.assert_frame_equal(ds.data, pd.read_parquet(out.augmented))
    assert list(ds.provenance) == list(ds.data[SOURCE_COLUMN])
    assert (ds.provenance == "synthetic").sum() == manifest["rows"]["synthetic"] > 0
    sheet = ds.datasheet
    assert sheet.startswith("# Datasheet: augmented training set") and "It contains the real train split" in sheet
    assert "not validated" in sheet and "Not measured (`augment.benefit: false`)" in sheet
    for cls, entry in manifest["classes"].items():
        assert f"| {cls} | {entry['before']} | {entry['added']} | {entry['after']} |" in sheet

    stages.generate(params)
    assert stages.validate(params)["passed"]  # the very model passes its gate: recorded by augment
    verdict = stages.augment(params)["generator_validation"]
    run = json.loads(Layout(params.out).manifest.read_text())
    assert verdict["passed"] and verdict["synthetic_hash"] == run["synthetic_hash"]
    ds = synthgen.load_dataset(out.manifest)
    assert ds.passed and "PASSED its trust gate" in ds.datasheet and "| quality_score |" in ds.datasheet

    strict = parse_params({**raw, "validate": {"min": {"quality_score": 0.999}}})
    assert not stages.validate(strict)["passed"]
    assert stages.augment(strict)["generator_validation"]["failed_checks"] == ["quality_score"]
    with pytest.raises(DataError, match=r"its generator's validation failed \(quality_score\); refusing"):
        synthgen.load_dataset(out.dir)
    assert "REJECTED by its trust gate (failed: quality_score)" in synthgen.load_dataset(out.dir, allow_failed=True).datasheet

    stages.train(params)  # a new model: the old verdict is not its own
    assert stages.augment(params)["generator_validation"] is None
    frame = pd.read_parquet(out.augmented)
    frame.iloc[:-1].to_parquet(out.augmented, index=False)
    with pytest.raises(DataError, match="does not match the manifest's augmented_hash"):
        synthgen.load_dataset(out.dir)


def test_enlarge_keeps_the_class_mix(trained, tmp_path):
    params = parse_params(_copy(trained, tmp_path, augment={"mode": "enlarge", "factor": 1.5, "benefit": False}))
    manifest = stages.augment(params)
    train = pd.read_parquet(Layout(params.out).train)
    labelled = int(train["species"].notna().sum())
    assert manifest["rows"]["synthetic"] == int(0.5 * labelled + 0.5)
    for cls, entry in manifest["classes"].items():
        assert abs(entry["added"] - 0.5 * entry["before"]) < 1  # stratified


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.target=null"], "data.target: required by the augment stage"),
        (["data.target=body_mass_g"], "data.target: 'body_mass_g' has kind 'integer'; augment needs a discrete"),
        (["data.target=nope"], "data.target: 'nope' is not a column"),
        (["augment.ratio=0"], "augment.ratio: Input should be greater than 0"),
        (["augment.ratio=-1"], "augment.ratio: Input should be greater than 0"),
        (["augment.mode=shrink"], "augment.mode: Input should be 'rebalance' or 'enlarge'"),
        (["augment.minority=Emperor"], "augment.minority: 'Emperor' is not a class of 'species'"),
    ],
)
def test_bad_config_exits_2_naming_the_key(trained, tmp_path, overrides, message):
    raw = _copy(trained, tmp_path)
    params_file = write_params(tmp_path / "params.yaml", raw)
    result = CliRunner().invoke(cli, ["augment", "--params", str(params_file),
                                      *[a for o in overrides for a in ("--set", o)]])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "augment").exists()  # nothing written


def test_no_trained_model_exits_2(tmp_path):
    raw = tiny_params(tmp_path, None, model=TINY_GAN)
    stages.ingest(parse_params(raw))
    result = CliRunner().invoke(cli, ["augment", "--params", str(write_params(tmp_path / "p.yaml", raw))])
    assert result.exit_code == 2
    assert "output.dir: no trained model" in result.stderr and "synthgen train" in result.stderr


def test_prefect_augment_flow_completes(tmp_path, mlflow_uri, monkeypatch):
    from prefect.testing.utilities import prefect_test_harness

    from pipelines.augment_flow import augment_pipeline

    raw = tiny_params(tmp_path, mlflow_uri, model={**TINY_GAN, "epochs": 2},
                      augment={"seeds": 1, "models": ["logistic"]})
    params_file = write_params(tmp_path / "params.yaml", raw)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    with prefect_test_harness(server_startup_timeout=180):
        state = augment_pipeline(str(params_file), ["augment.ratio=0.8"], return_state=True)
    assert state.is_completed()
    manifest = state.result()
    assert manifest["augment"]["ratio"] == 0.8 and manifest["rows"]["synthetic"] > 0
    assert manifest["generator_validation"]["passed"]  # the flow validates before it augments
    assert (tmp_path / "out" / "augment" / "augmented.parquet").is_file()
    assert json.loads((tmp_path / "out" / "augment" / "benefit.json").read_text())["measured"]
