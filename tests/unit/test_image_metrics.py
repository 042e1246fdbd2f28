"""Offline image metrics (synthgen/validation/images/) on scikit-learn's 8×8 digits.

The math functions are checked against hand-computed cases; the report is checked on
sanity properties: real unseen images score like real data, shuffled labels score at
chance, noise scores badly, copies of the train split are flagged (and their metrics
that read better than real data listed as metric failures), and a fixed seed gives the
same report. One judge (6 epochs) is shared by the scenario tests. Detection, the
random/pixel spaces and the gate: tests/unit/test_image_detection.py.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from synthgen.errors import DataError
from synthgen.data.images import sample_grid
from synthgen.validation.images import metrics as image_math
from synthgen.validation.images import (
    IMAGE_METRICS,
    fid_from_features,
    fit_judge,
    frechet_distance,
    image_report,
    image_report_html_section,
    kernel_distance,
    prdc,
)

EPOCHS = 6  # enough for ~94% holdout accuracy on digits, ~3 s on one thread


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    """(train_x, train_y, holdout_x, holdout_y): 1437 / 360 uint8 8×8×1 digits."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = np.round(data.images * (255 / 16)).astype(np.uint8)[..., None]
    order = np.random.default_rng(0).permutation(len(x))
    train, hold = order[:1437], order[1437:]
    return x[train], data.target[train], x[hold], data.target[hold]


@pytest.fixture(scope="module")
def judge(digits):
    train_x, train_y, _, _ = digits
    return fit_judge(train_x, train_y, seed=0, epochs=EPOCHS)


def _report(digits, judge, gen_x, gen_y):
    train_x, train_y, hold_x, hold_y = digits
    report = image_report(train_x, train_y, hold_x, hold_y, gen_x, gen_y, seed=0, judge=judge)
    json.dumps(report, allow_nan=False)  # JSON-safe
    assert set(IMAGE_METRICS) <= set(report["metrics"])
    return report


# -- the math, by hand -------------------------------------------------------------------
def test_frechet_distance_matches_hand_computed_values():
    # 1-D: (mu1 - mu2)^2 + (sigma1 - sigma2)^2 = 1 + (2 - 1)^2
    assert frechet_distance(np.array([0.0]), np.array([[4.0]]), np.array([1.0]), np.array([[1.0]])) == pytest.approx(2.0)
    # corners of a square and the same scaled by 2, shifted by 1: means (1,1) and (3,3),
    # covariances (ddof=1) 4/3 I and 16/3 I -> |(2,2)|^2 + 2 (sqrt(16/3) - sqrt(4/3))^2 = 8 + 8/3
    a = np.array([[0, 0], [2, 0], [0, 2], [2, 2]], dtype=float)
    assert fid_from_features(a, 2 * a + 1) == pytest.approx(32 / 3)
    # identical sets: 0; more features than rows (singular covariances): still finite
    x = np.random.default_rng(0).normal(size=(300, 16))
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-6)
    few = np.random.default_rng(1).normal(size=(10, 32))
    assert np.isfinite(fid_from_features(few, few + 1.0))
    assert fid_from_features(few, few + 1.0) == pytest.approx(32.0, rel=1e-3)  # only the mean moved


def test_kid_matches_hand_computed_value(monkeypatch):
    # k(x, y) = (x y + 1)^3 (d = 1): Kxx off-diagonal 1, Kyy off-diagonal 27,
    # Kxy = [[1, 1], [8, 27]] -> 2/2 + 54/2 - 2 * 37/4 = 9.5; subsets are the whole sets
    mean, std = kernel_distance(np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]]), subsets=5)
    assert mean == pytest.approx(9.5)
    assert std == pytest.approx(0.0)
    rng = np.random.default_rng(0)
    same, _ = kernel_distance(rng.normal(size=(400, 8)), rng.normal(size=(400, 8)), subsets=20)
    shifted, _ = kernel_distance(rng.normal(size=(400, 8)), rng.normal(size=(400, 8)) + 1, subsets=20)
    assert abs(same) < 0.05 < shifted
    # whole kernels once + 0/1 masks (small sets) == kernels per subset (large sets)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(120, 8)) + 0.3
    masked = kernel_distance(a, b, subsets=10, subset_size=100, seed=4)
    monkeypatch.setattr(image_math, "_KID_PRECOMPUTE", 0)
    assert kernel_distance(a, b, subsets=10, subset_size=100, seed=4) == pytest.approx(masked, rel=1e-9)


def test_prdc_matches_hand_computed_values():
    # real points 0..9 on a line: k=1 radii are all 1. Fake 0.5 lies in the balls of 0
    # and 1, fake 100 in none: precision 1/2, density (2 + 0) / (1 * 2) = 1, coverage
    # 2/10 (reals 0 and 1 have a fake within radius). Fake radii are 99.5: recall 1.
    real = np.arange(10, dtype=float)[:, None]
    fake = np.array([[0.5], [100.0]])
    assert prdc(real, fake, k=1) == pytest.approx({"precision": 0.5, "recall": 1.0, "density": 1.0, "coverage": 0.2})
    with pytest.raises(DataError, match="more than k=5"):
        prdc(real, fake)


# -- the report on digits ----------------------------------------------------------------
def test_real_holdout_scores_like_real_data(digits, judge):
    _, _, hold_x, hold_y = digits
    report = _report(digits, judge, hold_x, hold_y)
    m, d = report["metrics"], report["details"]
    assert m["fid_domain"] < 1.0 and abs(m["kid_domain"]) < 0.02
    assert m["fid_domain"] == d["baseline"]["fid_domain"]  # the holdout is the baseline
    assert m["real_accuracy"] > 0.85
    assert m["generated_class_accuracy"] == m["real_accuracy"] == d["judge"]["holdout_accuracy"]
    assert m["precision"] > 0.9 and m["recall"] > 0.9 and 0.8 < m["density"] < 1.2
    assert m["memorization_ratio"] == 1.0 and m["memorization_share"] < 0.05 and m["exact_copies"] == 0
    assert m["tstr_accuracy"] > 0.85  # (trained on the holdout itself here: an upper bound)
    assert set(d["per_class_accuracy"]) == {str(c) for c in range(10)}
    assert d["matched_n"] == 360 and d["kid_train_rows"] == 1000 and d["judge"]["task"] == "classes"
    assert d["judge"]["train_images"] == 1437
    for name in ("fid_random", "precision_random", "fid_pixel", "coverage_pixel"):  # every space: the baseline
        assert m[name] == d["baseline"][name]
    assert m["metric_failures"] == 0 and d["metric_failures"] == []
    assert m["image_detection_auc"] == 0.5  # the same images on both sides: chance (floored)


def test_shuffled_labels_score_near_chance(digits, judge):
    _, _, hold_x, hold_y = digits
    shuffled = np.random.default_rng(1).permutation(hold_y)
    m = _report(digits, judge, hold_x, shuffled)["metrics"]
    assert m["real_accuracy"] > 0.85
    assert m["generated_class_accuracy"] < 0.25 and m["tstr_accuracy"] < 0.3  # chance is 0.1
    assert m["fid_domain"] < 1.0  # the images themselves are real


def test_uniform_noise_scores_badly(digits, judge):
    _, _, hold_x, hold_y = digits
    noise = np.random.default_rng(2).integers(0, 256, size=hold_x.shape, dtype=np.uint8)
    report = _report(digits, judge, noise, hold_y)
    m, base = report["metrics"], report["details"]["baseline"]
    assert m["fid_domain"] > 20 * base["fid_domain"] and m["kid_domain"] > 0.1
    assert m["precision"] < 0.5 < base["precision"]
    assert m["recall"] < 0.2 and m["coverage"] < 0.2
    assert m["generated_class_accuracy"] < 0.3
    assert m["memorization_ratio"] > 2 and m["memorization_share"] == 0.0
    assert m["image_detection_auc"] == 1.0 and m["metric_failures"] == 0  # told apart; nothing reads better than real
    assert m["fid_random"] > 20 * base["fid_random"] and m["precision_pixel"] < base["precision_pixel"]


def test_copies_of_train_are_flagged(digits, judge):
    train_x, train_y, _, _ = digits
    report = _report(digits, judge, train_x[:360], train_y[:360])
    m = report["metrics"]
    assert m["exact_copies"] == 360 and m["exact_copy_rate"] == 1.0
    assert m["memorization_ratio"] == 0.0 and m["memorization_share"] == 1.0
    assert report["details"]["memorization"]["feature"]["ratio"] == 0.0
    assert report["details"]["baseline"]["exact_copies"] == 0
    assert m["image_detection_auc"] < 0.7  # real images: detection cannot tell; the copy metrics do
    failed = {f["name"] for f in report["details"]["metric_failures"]}
    assert m["metric_failures"] == len(failed) and {"fid_random", "fid_pixel", "fid_domain"} <= failed
    assert m["tstr_accuracy"] > 0.8  # real images of every class: a useful training set


def test_same_seed_same_report_and_unconditional_data(digits):
    train_x, train_y, hold_x, hold_y = digits
    small = (train_x[:500], train_y[:500], hold_x[:120], hold_y[:120], hold_x[120:240], hold_y[120:240])

    def strip(report):
        report["details"].pop("seconds")
        return report

    first = strip(image_report(*small, seed=3, epochs=3))
    assert first == strip(image_report(*small, seed=3, epochs=3))
    # without labels: the judge learns rotations; accuracies are None, distances are not
    report = image_report(train_x[:500], None, hold_x[:120], None, hold_x[120:240], None, seed=3, epochs=3)
    m = report["metrics"]
    assert report["details"]["judge"]["task"] == "rotations"
    assert m["generated_class_accuracy"] is None and m["tstr_accuracy"] is None and m["real_accuracy"] is None
    assert m["fid_domain"] is not None and m["precision"] > 0.8
    json.dumps(report, allow_nan=False)


def test_bad_inputs_raise_named_errors(digits, judge):
    train_x, train_y, hold_x, hold_y = digits
    with pytest.raises(DataError, match="gen_x: expected uint8"):
        image_report(train_x, train_y, hold_x, hold_y, hold_x.astype(np.float32), hold_y, judge=judge)
    with pytest.raises(DataError, match="holdout_x: images are"):
        image_report(train_x, train_y, np.zeros((20, 16, 16, 1), np.uint8), None, hold_x, hold_y, judge=judge)
    with pytest.raises(DataError, match="gen_y: expected 360 labels"):
        image_report(train_x, train_y, hold_x, hold_y, hold_x, hold_y[:10], judge=judge)
    with pytest.raises(DataError, match=r"gen_y: label\(s\) \[11\]"):
        image_report(train_x, train_y, hold_x, hold_y, hold_x, np.full(360, 11), judge=judge)
    with pytest.raises(DataError, match="judge: it was fitted on other train images"):
        image_report(hold_x, hold_y, hold_x, hold_y, hold_x, hold_y, judge=judge)


# -- pictures ----------------------------------------------------------------------------
def test_sample_grid_png(digits, tmp_path):
    from PIL import Image

    train_x, train_y, _, _ = digits
    png = sample_grid(train_x[:200], train_y[:200], tmp_path / "grid.png", nrow=5)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "grid.png").read_bytes() == png
    assert sample_grid(train_x[:200], train_y[:200], None, nrow=5) == png  # deterministic
    image = Image.open(io.BytesIO(png))
    cell = 8 * 4 + 2  # 8 px enlarged 4x to reach 32 px, 2 px gap
    assert image.height == 2 + 10 * cell  # one row per class
    assert image.width > 2 + 5 * cell  # plus the label margin
    rgb = np.repeat(train_x[:7], 3, axis=-1)
    image = Image.open(io.BytesIO(sample_grid(rgb, None, nrow=3)))
    assert image.mode == "RGB" and image.size == (2 + 3 * cell, 2 + 3 * cell)  # ceil(7 / 3) rows
    with pytest.raises(DataError, match="uint8"):
        sample_grid(train_x.astype(float))


def test_html_section_lists_metrics_and_grid(digits):
    _, _, hold_x, hold_y = digits
    report = {"metrics": {name: 0.5 for name in IMAGE_METRICS} | {"exact_copies": 0},
              "details": {"baseline": {"fid_domain": 0.1}}}
    section = image_report_html_section(report, sample_grid(hold_x[:20], hold_y[:20]))
    assert "fid_domain" in section and "exact_copies" in section and "0.1" in section
    assert 'src="data:image/png;base64,' in section
