"""Offline evaluation of generated images: nothing downloaded, nothing trusted blindly.

Instead of Inception, three feature spaces: a small CNN trained on the real train split
(the judge; "Fréchet LeNet distance" for MNIST-like data), a fixed randomly initialised
CNN and simple pixel/HOG features (neither trained on the train split). A classifier
two-sample test against the real holdout (``image_detection_auc``) is the gated
headline; every distribution metric stands beside the real holdout's own value, and a
generated set that beats real unseen images is flagged as a metric failure. The package:

* :mod:`~synthgen.validation.images.metrics`: the feature-space math (Fréchet and
  kernel distances, precision/recall/density/coverage, nearest neighbours, exact copies);
* :mod:`~synthgen.validation.images.judge`: :class:`SmallCNN`, its training loop
  :func:`train_classifier`, :class:`Judge` and :func:`fit_judge`;
* :mod:`~synthgen.validation.images.features`: :class:`RandomCNN`, :func:`hog`,
  :func:`pixel_hog_features` (the spaces not trained on the train split);
* :mod:`~synthgen.validation.images.detection`: :func:`image_detection` (CNN and
  pixel/HOG logistic regression, cross-validated AUC against the holdout);
* :mod:`~synthgen.validation.images.compare`: size-matched metrics per space and the
  metric-failure rule;
* :mod:`~synthgen.validation.images.report`: :func:`image_report` (what each metric
  means and its caveats are in that module's docstring);
* :mod:`~synthgen.validation.images.section`: its HTML section.

The names below are re-exported so that ``from synthgen.validation.images import ...``
keeps working.
"""

from __future__ import annotations

from synthgen.validation.images.detection import image_detection
from synthgen.validation.images.features import RandomCNN, hog, pixel_hog_features, random_features
from synthgen.validation.images.judge import (
    BATCH_SIZE,
    FEATURE_DIM,
    LEARNING_RATE,
    TARGET_STEPS,
    Judge,
    SmallCNN,
    fit_judge,
    predict,
    steps_for,
    to_tensor,
    train_classifier,
)
from synthgen.validation.images.metrics import (
    FID_EPS,
    KID_DEGREE,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    PRDC_K,
    exact_copy_mask,
    fid_from_features,
    frechet_distance,
    kernel_distance,
    nearest_distances,
    nearest_neighbours,
    prdc,
)
from synthgen.validation.images.report import IMAGE_METRICS, MAX_POINTS, SPACES, image_report
from synthgen.validation.images.section import image_report_html_section


__all__ = [
    "BATCH_SIZE", "FEATURE_DIM", "FID_EPS", "IMAGE_METRICS", "KID_DEGREE", "KID_SUBSETS", "KID_SUBSET_SIZE",
    "LEARNING_RATE", "MAX_POINTS", "PRDC_K", "SPACES", "TARGET_STEPS", "Judge", "RandomCNN", "SmallCNN",
    "exact_copy_mask", "fid_from_features", "fit_judge", "frechet_distance", "hog", "image_detection",
    "image_report", "image_report_html_section", "kernel_distance", "nearest_distances", "nearest_neighbours",
    "pixel_hog_features", "prdc", "predict", "random_features", "steps_for", "to_tensor", "train_classifier",
]  # fmt: skip
