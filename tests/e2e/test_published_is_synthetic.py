"""Attacks on the publishing claims, through the CLI: ``published/`` carries no real record,
DP output stays DP output, class names cannot write outside the output folder.

* an image run: no real train image appears, pixel for pixel, in any picture the published
  report embeds (the same detector finds them in the run directory's full report);
* a DP table run: the published report is built from no real frame and shows no
  real-vs-synthetic figure; ``published/`` holds exactly data, manifest, datasheet, report;
* ``validate.privacy_filter`` with ``privacy.epsilon`` is refused on load (exit 2, one line);
* class names such as ``../evil`` or ``/abs`` are refused at ingest and when a (tampered)
  model writes an image folder.
"""

from __future__ import annotations

import base64
import inspect
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from PIL import Image

from synthgen.cli import cli
from synthgen.data.images import DIGITS, load_images, read_images
from synthgen.data.schema import TableSchema
from synthgen.reports.images import build_public_image_report
from synthgen.reports.tables import build_public_report
from synthgen.stages import load_params
from tests.conftest import tiny_params, write_params
from tests.tiny import TINY_GAN, TINY_IMAGE

pytestmark = pytest.mark.slow  # an image and a DP table run through the CLI (~1 min): `make test-team`

EMBEDDED = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synthgen", *args], capture_output=True, text=True)


def _embedded(page: str) -> list[tuple[str, np.ndarray]]:
    """(alt text, grayscale pixels) of every PNG embedded in an HTML page."""
    out = []
    for alt, data in EMBEDDED.findall(page):
        with Image.open(io.BytesIO(base64.b64decode(data))) as img:
            out.append((alt, np.asarray(img.convert("L"))))
    assert page.count("data:image/png;base64,") == len(out)  # every embedded PNG was decoded
    return out


def _real_tiles_found(pixels: np.ndarray, real: np.ndarray, scales=range(1, 9)) -> int:
    """How many distinct real images appear as a tile of ``pixels``, at any position, enlarged
    by any integer factor in ``scales`` (nearest neighbour, as sample grids draw them): a
    window whose every ``scale``-th pixel equals the real image counts."""
    h, w = real.shape[1:3]
    wanted = {img.tobytes() for img in real}
    found: set[bytes] = set()
    for scale in scales:
        for dy in range(scale):
            for dx in range(scale):
                sub = np.ascontiguousarray(pixels[dy::scale, dx::scale])
                if sub.shape[0] < h or sub.shape[1] < w:
                    continue
                windows = np.lib.stride_tricks.sliding_window_view(sub, (h, w)).reshape(-1, h * w)
                found |= wanted.intersection(map(bytes, np.ascontiguousarray(windows)))
    return len(found)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """One tiny image pipeline run through the CLI on a 5-class slice of the 8 x 8 digits
    (tracking off: publishing is the subject here)."""
    root = tmp_path_factory.mktemp("published-images")
    digits = read_images(DIGITS, 8)
    rng = np.random.default_rng(0)
    keep = np.concatenate([rng.choice(np.flatnonzero(digits.labels == c), 30, replace=False) for c in range(5)])
    np.savez(root / "digits.npz", images=digits.images[keep][..., 0], labels=digits.labels[keep])
    params = {
        "data": {"path": str(root / "digits.npz"), "kind": "image", "image_size": 8, "holdout": 0.25},
        "model": dict(TINY_IMAGE),
        "generate": {"rows": 50},
        "validate": {"min": {"real_accuracy": 0.0},  # ceilings merge with the image defaults: all set loose
                     "max": {"exact_copy_rate": 1.0, "image_detection_auc": 1.0, "memorization_share": 1.0}},
        "tracking": {"uri": None},
        "output": {"dir": str(root / "out")},
    }
    result = _cli("run", "--params", str(write_params(root / "params.yaml", params)))
    assert result.returncode == 0, result.stderr[-2000:]
    return root


def test_published_image_report_shows_no_real_image(image_run):
    out = image_run / "out"
    published = out / "published"
    assert sorted(p.name for p in published.iterdir()) == ["DATASHEET.md", "manifest.json", "report.html", "synthetic"]
    page = (published / "report.html").read_text()
    assert page == (out / "report_public.html").read_text()
    assert "Real holdout images" not in page and "real holdout grid" not in page and "report.html</code> in the run" in page
    assert "nearest train neighbours" not in page
    figures = _embedded(page)
    assert [alt for alt, _ in figures] == ["sample grid", "losses"]  # the synthetic grid and the loss curves only

    train = load_images(out / "data" / "train.npz").images[..., 0]
    holdout = load_images(out / "data" / "holdout.npz").images[..., 0]
    real = np.concatenate([train, holdout])
    for alt, pixels in figures:
        assert _real_tiles_found(pixels, real) == 0, f"a real image is embedded in the published {alt!r}"
    # the detector works: the full report in the run directory shows real holdout images as tiles,
    # and train images beside their nearest generated ones
    full = dict(_embedded((out / "report.html").read_text()))
    assert _real_tiles_found(full["real holdout grid"], holdout, scales=[4]) >= 30
    assert _real_tiles_found(full["nearest train neighbours"], train, scales=[4]) >= 1
    # and nothing published embeds a picture apart from the report's
    for path in published.rglob("*"):
        if path.suffix in (".md", ".json", ".csv"):
            assert "data:image" not in path.read_text()
    assert not list(published.rglob("*.html"))[1:]  # one page: the public report


def test_public_report_builders_take_no_real_data():
    assert list(inspect.signature(build_public_report).parameters) == [
        "synthetic", "schema", "validation", "losses", "title"]
    assert list(inspect.signature(build_public_image_report).parameters) == [
        "report", "grid_png", "losses", "manifest"]


def test_dp_table_run_publishes_no_real_figure(tmp_path):
    loose = {"exact_copy_rate": 1.0, "dcr_overfitting_share": 1.0, "mia_auc": 1.0}
    params = tiny_params(tmp_path, None, model=dict(TINY_GAN), privacy={"epsilon": 5.0},
                         validate={"max": loose})
    result = _cli("run", "--params", str(write_params(tmp_path / "p.yaml", params)))
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "out"
    published = out / "published"
    assert sorted(p.name for p in published.iterdir()) == [
        "DATASHEET.md", "manifest.json", "report.html", "synthetic.parquet"]
    manifest = json.loads((published / "manifest.json").read_text())
    assert manifest["privacy"]["epsilon"] == 5.0 and manifest["privacy"]["epsilon_spent"] <= 5.0
    page = (published / "report.html").read_text()
    assert page == (out / "report_public.html").read_text()
    alts = [alt for alt, _ in _embedded(page)]
    modelled = [c.name for c in TableSchema.load(out / "schema.json").columns if c.modelled]
    assert alts == ["loss curves", *(f"synthetic column {name}" for name in modelled)]
    assert 'alt="pair-trend heatmap"' not in page and 'alt="column ' not in page and "real train" not in page.lower()
    assert "Verdict: PASSED" in page and "spent =" in page and "report.html</code> in the run" in page
    full = (out / "report.html").read_text()  # the data owner's report keeps the comparison
    assert 'alt="pair-trend heatmap"' in full and 'alt="column bill_length_mm"' in full
    for name in ("DATASHEET.md", "manifest.json"):
        assert "data:image" not in (published / name).read_text()


def test_privacy_filter_with_epsilon_is_refused_before_any_work(tmp_path, mlflow_uri):
    params = tiny_params(tmp_path, mlflow_uri, model=dict(TINY_GAN), privacy={"epsilon": 3.0},
                         validate={"privacy_filter": 0.05})
    path = write_params(tmp_path / "p.yaml", params)
    result = _cli("run", "--params", str(path))  # across the process boundary
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1
    assert "validate.privacy_filter" in result.stderr and "privacy.epsilon" in result.stderr
    assert "differential-privacy guarantee" in result.stderr and str(path) in result.stderr
    for stage in ("ingest", "train", "generate", "validate"):  # every stage refuses it on load (in-process)
        refused = CliRunner().invoke(cli, [stage, "--params", str(path)])
        assert refused.exit_code == 2 and "validate.privacy_filter" in refused.stderr, (stage, refused.stderr)
    assert not (tmp_path / "out").exists()
    assert MlflowClient(tracking_uri=mlflow_uri).search_runs(experiment_ids=["0"]) == []
    # either alone is accepted (the filter without DP is the user's own post-processing)
    ok = write_params(tmp_path / "ok.yaml", tiny_params(tmp_path, None, validate={"privacy_filter": 0.05}))
    assert load_params(ok).validate_.privacy_filter == 0.05
    assert load_params(path, ["validate.privacy_filter=null"]).privacy.epsilon == 3.0


def test_npz_class_name_outside_the_folder_is_refused_at_ingest(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    images = np.random.default_rng(0).integers(0, 255, (12, 8, 8), dtype=np.uint8)
    np.savez(work / "x.npz", images=images, labels=np.repeat([0, 1, 2], 4),
             classes=np.array(["ok", "../evil", "/abs"]))
    params = {"data": {"path": str(work / "x.npz"), "kind": "image", "image_size": 8},
              "model": dict(TINY_IMAGE), "tracking": {"uri": None}, "output": {"dir": str(work / "out")}}
    path = write_params(work / "p.yaml", params)
    result = _cli("ingest", "--params", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "x.npz: class name '../evil'" in result.stderr
    np.savez(work / "x.npz", images=images, labels=np.repeat([0, 1, 2], 4), classes=np.array(["ok", "b", "/abs"]))
    refused = CliRunner().invoke(cli, ["ingest", "--params", str(path)])  # the absolute name, in-process
    assert refused.exit_code == 2 and "x.npz: class name '/abs'" in refused.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["p.yaml", "work", "x.npz"]  # nothing written
    assert not Path("/abs").exists() and not (tmp_path / "evil").exists()


def test_tampered_model_class_name_cannot_write_outside_the_folder(image_run, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(image_run / "out" / "model", model)
    meta_path = model / "synthesizer.json"
    meta = json.loads(meta_path.read_text())
    meta["classes"][0] = "../evil"
    meta_path.write_text(json.dumps(meta))
    target = tmp_path / "deep" / "samples"
    result = _cli("sample", "--model", str(model), "--rows", "5", "--out", str(target), "--allow-unvalidated")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "class name '../evil'" in result.stderr
    assert not target.exists() and not (tmp_path / "deep" / "evil").exists() and not (tmp_path / "evil").exists()
