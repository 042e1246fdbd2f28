"""Detection: can a classifier tell synthetic rows from real ones?

As many real (train) as synthetic rows (at most ``max_rows`` each, sampled) are encoded
by :meth:`~synthgen.validation.encoding.MixedEncoder.features` (numbers scaled by the
real range but not clamped, so out-of-range values stay visible; one-hot categories under
the level cap of training, ``max_categories``; missing indicators) and labelled real 0 /
synthetic 1. Two classifiers are scored by stratified 3-fold cross-validated ROC AUC (mean
over folds, as SDMetrics' LogisticDetection): a logistic regression on standardized
features and a histogram gradient-boosted tree model.

* ``detection_auc``: the larger of the two AUCs, floored at 0.5 (0.5 = indistinguishable,
  1 = always told apart). AUCs under 0.5 happen when synthetic rows duplicate real
  ones (a test row's twin sits in the training folds with the other label); they mean
  chance, as in SDMetrics' ``max(AUC, 0.5)``. The raw AUCs stay in the details.

Models are fitted on one thread (``threadpoolctl``): on a small, shared machine
OpenMP's spinning threads made them several times slower, not faster.

Details give each model's AUC and SDMetrics' ``LogisticDetection`` score,
``1 - (2 max(AUC, 0.5) - 1)`` of the logistic model.

Why a run is told apart (:func:`explain_detection`, also in the details under
``columns`` and ``top_features``):

* ``columns``: each modelled column's *single-column detection AUC*: the same
  cross-validated hist-GBM given only that column's features (its scaled value and
  missing indicator, or its one-hot levels), floored at 0.5. A column above 0.7 gives rows
  away on its own (a value grid, a point mass or a range the generator misses).
* ``top_features``: the joint hist-GBM's most important columns, by grouped permutation
  importance on the held-out folds: the mean drop of its AUC when one column's features
  are shuffled across the test rows, largest first.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from synthgen.data.schema import TableSchema
from synthgen.validation.encoding import MAX_CATEGORIES, MixedEncoder, modelled_columns


def detection_report(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    *,
    max_rows: int = 5000,
    folds: int = 3,
    seed: int = 0,
    explain: bool = True,
    max_categories: int | None = MAX_CATEGORIES,
) -> dict[str, Any]:
    """Cross-validated real-vs-synthetic classifier AUCs.

    Args:
        real: the real train split.
        synthetic: the synthetic table.
        schema: the table schema (modelled columns are used).
        max_rows: most rows per side; both sides get ``min(len(real), len(synthetic),
            max_rows)``; default 5000.
        folds: stratified cross-validation folds; default 3.
        seed: seed of the sampling, folds and models; default 0.
        explain: also score each column alone and rank the joint model's columns
            (``columns``, ``top_features``; module docstring); default True.
        max_categories: level cap of the one-hot features, the rule of training
            (``data.max_categories``: the ``max_categories - 1`` most frequent real
            levels, the rest one "other" column); ``None`` keeps every level.

    Returns:
        ``{"detection_auc", "models": {"logistic", "hist_gbm"}, "logistic_detection",
        "columns", "top_features", "rows", "seconds"}`` (the explanation with
        ``explain``); AUCs are None when a side has fewer than ``folds`` rows
        or there is no modelled column.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    n = min(len(real), len(synthetic), max_rows)
    out: dict[str, Any] = {"detection_auc": None, "models": {}, "logistic_detection": None, "rows": n}
    if n < folds or not modelled_columns(schema):
        out["seconds"] = time.perf_counter() - t0
        return out
    rng = np.random.default_rng(seed)
    r = real.iloc[np.sort(rng.choice(len(real), n, replace=False))]
    s = synthetic.iloc[np.sort(rng.choice(len(synthetic), n, replace=False))]
    enc = MixedEncoder.fit(r, schema, others=[s], max_categories=max_categories)
    x = np.vstack([enc.features(r), enc.features(s)])
    y = np.r_[np.zeros(n), np.ones(n)]
    models = {
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
        "hist_gbm": HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=seed),
    }
    groups = feature_groups(enc)
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y))
    drops: dict[str, list[float]] = {c: [] for c in groups}
    rng = np.random.default_rng(seed)
    for name, model in models.items():
        aucs = []
        for fit_idx, test_idx in splits:
            with warnings.catch_warnings(), threadpool_limits(1):
                warnings.simplefilter("ignore")
                model.fit(x[fit_idx], y[fit_idx])
                auc = roc_auc_score(y[test_idx], model.predict_proba(x[test_idx])[:, 1])
                aucs.append(auc)
                if name == "hist_gbm" and explain:
                    for column, cols in groups.items():
                        shuffled = x[test_idx].copy()
                        shuffled[:, cols] = shuffled[rng.permutation(len(test_idx))][:, cols]
                        drops[column].append(auc - roc_auc_score(y[test_idx], model.predict_proba(shuffled)[:, 1]))
        out["models"][name] = float(np.mean(aucs))
    out["detection_auc"] = max(0.5, *out["models"].values())
    out["logistic_detection"] = 1.0 - (2.0 * max(out["models"]["logistic"], 0.5) - 1.0)
    if explain:
        single = {}
        for column, cols in groups.items():
            aucs = []
            for fit_idx, test_idx in splits:
                model = HistGradientBoostingClassifier(max_iter=50, early_stopping=False, random_state=seed)
                with warnings.catch_warnings(), threadpool_limits(1):
                    warnings.simplefilter("ignore")
                    model.fit(x[fit_idx][:, cols], y[fit_idx])
                    aucs.append(roc_auc_score(y[test_idx], model.predict_proba(x[test_idx][:, cols])[:, 1]))
            single[column] = max(0.5, float(np.mean(aucs)))
        out["columns"] = single
        importance = {c: float(np.mean(v)) for c, v in drops.items()}
        out["top_features"] = [{"column": c, "auc_drop": d}
                               for c, d in sorted(importance.items(), key=lambda kv: -kv[1])]
    out["seconds"] = time.perf_counter() - t0
    return out


def explain_detection(real: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema,
                      **kwargs: Any) -> dict[str, Any]:
    """Why rows are told apart: ``{"hist_gbm": joint AUC, "columns": {column: single-column
    AUC}, "top_features": [{"column", "auc_drop"}, ...]}`` (see the module docstring);
    keyword arguments as :func:`detection_report`."""
    report = detection_report(real, synthetic, schema, explain=True, **kwargs)
    return {"hist_gbm": report["models"].get("hist_gbm"), "columns": report.get("columns", {}),
            "top_features": report.get("top_features", [])}


def feature_groups(enc: MixedEncoder) -> dict[str, list[int]]:
    """The positions of each column's features in :meth:`MixedEncoder.features` (scaled
    numbers, then missing indicators of the numbers that have them, then one-hot blocks)."""
    groups: dict[str, list[int]] = {c: [i] for i, c in enumerate(enc.numeric)}
    pos = len(enc.numeric)
    for c, has_missing in zip(enc.numeric, enc.with_missing):
        if has_missing:
            groups[c].append(pos)
            pos += 1
    for c, levels in zip(enc.discrete, enc.levels):
        groups[c] = list(range(pos, pos + len(levels) + 1))
        pos += len(levels) + 1
    return groups
