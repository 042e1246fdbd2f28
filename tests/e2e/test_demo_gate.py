"""The project's own params.yaml gate on the demo data, through the CLI.

One honest run of the demo configuration (tabular_gan, its default step budget, the
thresholds of params.yaml) must pass; a copy of the training data, independently
shuffled columns and uniform noise, audited with ``synthgen validate --synthetic``
against the same gate, must each fail for the reason the trust report promises.
"""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT, write_params

# a full-length demo training (~75 s on 2 quiet cores): `make test-team`, which CI runs too
pytestmark = pytest.mark.slow


def synthgen(*args):
    return subprocess.run([sys.executable, "-m", "synthgen", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, mlflow_template):
    """``synthgen run`` with the repository's params.yaml (output and tracking moved)."""
    import shutil

    tmp = tmp_path_factory.mktemp("demo")
    shutil.copy(mlflow_template, tmp / "mlflow.db")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["path"] = str(ROOT / params["data"]["path"])
    params["tracking"]["uri"] = f"sqlite:///{tmp / 'mlflow.db'}"
    params["output"]["dir"] = str(tmp / "out")
    path = write_params(tmp / "params.yaml", params)
    result = synthgen("run", "--params", str(path))
    return tmp, path, result


def _failed(tmp, params_file, name, frame):
    csv = tmp / f"{name}.csv"
    frame.to_csv(csv, index=False)
    result = synthgen("validate", "--params", str(params_file), "--synthetic", str(csv),
                      "--out", str(tmp / f"{name}.json"))
    verdict = json.loads((tmp / f"{name}.json").read_text())
    assert result.returncode == (0 if verdict["passed"] else 1), result.stderr
    return {c["name"] for c in verdict["checks"] if not c["passed"]}


def test_honest_demo_run_passes_the_default_gate(demo_run):
    tmp, _, result = demo_run
    assert result.returncode == 0, result.stderr
    verdict = json.loads((tmp / "out" / "validation.json").read_text())
    assert verdict["passed"], [c for c in verdict["checks"] if not c["passed"]]
    names = {c["name"] for c in verdict["checks"]}
    # the default gate covers fidelity, detection and privacy
    assert {"column_shapes", "column_pair_trends", "detection_auc", "exact_copy_rate",
            "dcr_overfitting_share", "mia_auc"} <= names
    assert (tmp / "out" / "published" / "synthetic.parquet").is_file()


def test_copy_shuffled_and_noise_fail_the_default_gate(demo_run):
    tmp, params_file, result = demo_run
    assert result.returncode == 0, result.stderr
    schema = json.loads((tmp / "out" / "schema.json").read_text())
    train = pd.read_parquet(tmp / "out" / "data" / "train.parquet")
    rng = np.random.default_rng(7)
    shuffled = train.apply(lambda col: col.to_numpy()[rng.permutation(len(col))])
    noise = train.copy()
    for spec in schema["columns"]:
        name = spec["name"]
        if spec["kind"] in ("continuous", "integer"):
            values = rng.uniform(spec["min"], spec["max"], len(train))
            noise[name] = values.round() if spec["kind"] == "integer" else values
        elif spec.get("categories"):
            noise[name] = rng.choice(np.array(spec["categories"], dtype=object), len(train))

    assert {"exact_copy_rate", "mia_auc"} <= _failed(tmp, params_file, "copy", train)
    assert {"column_pair_trends", "detection_auc"} <= _failed(tmp, params_file, "shuffled", shuffled)
    assert "column_shapes" in _failed(tmp, params_file, "noise", noise)
