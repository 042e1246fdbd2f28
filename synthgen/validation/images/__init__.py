"""Offline evaluation of generated images with a small domain classifier (the judge).

Nothing is downloaded: instead of Inception, a small CNN is trained on the real train
split and its 64-unit penultimate layer is the feature space of FID, KID and PRDC (the
"Fréchet LeNet distance" idea for MNIST-like data). The package holds:

* :mod:`~synthgen.validation.images.metrics`: the feature-space math (Fréchet and
  kernel distances, precision/recall/density/coverage, nearest distances, exact copies);
* :mod:`~synthgen.validation.images.judge`: :class:`SmallCNN`, its training loop
  :func:`train_classifier`, :class:`Judge` and :func:`fit_judge`;
* :mod:`~synthgen.validation.images.report`: :func:`image_report` (what each metric
  means and its caveats are in that module's docstring) and its HTML section.

The names below are re-exported so that ``from synthgen.validation.images import ...``
keeps working.
"""

from __future__ import annotations

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
    prdc,
)
from synthgen.validation.images.report import (
    IMAGE_METRICS,
    MAX_POINTS,
    image_report,
    image_report_html_section,
)


__all__ = [
    "BATCH_SIZE", "FEATURE_DIM", "FID_EPS", "IMAGE_METRICS", "KID_DEGREE", "KID_SUBSETS", "KID_SUBSET_SIZE",
    "LEARNING_RATE", "MAX_POINTS", "PRDC_K", "TARGET_STEPS", "Judge", "SmallCNN", "exact_copy_mask",
    "fid_from_features", "fit_judge", "frechet_distance", "image_report", "image_report_html_section",
    "kernel_distance", "nearest_distances", "prdc", "predict", "steps_for", "to_tensor", "train_classifier",
]  # fmt: skip
