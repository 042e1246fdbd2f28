"""Machine-learning utility: train on synthetic, test on real (TSTR) against TRTR.

For the target column (``data.target``) two scikit-learn models are trained on the
synthetic table (TSTR) and, as the yardstick, on the real train split (TRTR); both are
tested on the same real holdout:

* classification (categorical/boolean target): ``LogisticRegression`` and
  ``HistGradientBoostingClassifier``, scored by **macro-F1** over the classes present
  in the holdout (SDMetrics' ML efficacy uses F1);
* regression (number/date target): ``Ridge`` and ``HistGradientBoostingRegressor``,
  scored by **R²** clipped at 0 (a model worse than the mean counts 0).

Features are every other modelled column, encoded by
:meth:`~synthgen.validation.encoding.MixedEncoder.features` (numbers scaled by the real
range, one-hot categories under the level cap of training, missing indicators). Rows whose target is missing are
dropped. Both training sets are subsampled to the same size (at most ``max_rows``).
A synthetic table with fewer than two target classes (or no rows) scores 0, as failed.
Models are fitted on one thread (``threadpoolctl``; see :mod:`.detection`).

Metrics: ``tstr_score`` and ``trtr_score`` (means over the two models) and
``tstr_ratio = tstr_score / trtr_score`` (None when ``trtr_score`` is 0); about 1 is as
useful as the real data.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from synthgen.data.schema import TableSchema
from synthgen.errors import DataError
from synthgen.validation.encoding import MAX_CATEGORIES, MixedEncoder, modelled_columns

UTILITY_METRICS = ("tstr_score", "trtr_score", "tstr_ratio")


def _models(classification: bool, seed: int) -> dict[str, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge

    if classification:
        return {"logistic": LogisticRegression(max_iter=500),
                "hist_gbm": HistGradientBoostingClassifier(max_iter=100, random_state=seed)}
    return {"ridge": Ridge(alpha=1.0), "hist_gbm": HistGradientBoostingRegressor(max_iter=100, random_state=seed)}


def utility_report(
    train: pd.DataFrame,
    holdout: pd.DataFrame | None,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    target: str | None,
    *,
    max_rows: int = 20_000,
    seed: int = 0,
    max_categories: int | None = MAX_CATEGORIES,
) -> dict[str, Any]:
    """TSTR vs TRTR scores of the module docstring.

    Args:
        train: the real train split.
        holdout: the real holdout (the test set); without it every metric is None.
        synthetic: the synthetic table.
        schema: the table schema.
        target: the target column; None gives None metrics.
        max_rows: most training rows per model (both sets get the same count);
            default 20000.
        seed: seed of the subsampling and the models; default 0.
        max_categories: level cap of the one-hot features (``data.max_categories``;
            see :meth:`~synthgen.validation.encoding.MixedEncoder.fit`); the target's
            classes are never pooled. ``None`` keeps every level.

    Returns:
        ``{"metrics": {tstr_score, trtr_score, tstr_ratio}, "task", "score",
        "models": {name: {"tstr", "trtr"}}, "note", "seconds"}``.

    Raises:
        DataError: the target is not a modelled column of the schema.
    """
    from sklearn.metrics import f1_score, r2_score
    from threadpoolctl import threadpool_limits

    out: dict[str, Any] = {"metrics": dict.fromkeys(UTILITY_METRICS), "task": None, "score": None,
                           "models": {}, "note": "", "seconds": 0.0}
    if target is None or holdout is None:
        out["note"] = "no target" if target is None else "no holdout"
        return out
    if target not in modelled_columns(schema):
        raise DataError(f"target {target!r} is not a modelled column of the table")
    t0 = time.perf_counter()
    features = modelled_columns(schema, exclude=[target])
    classification = schema[target].discrete
    out["task"] = "classification" if classification else "regression"
    out["score"] = "macro_f1" if classification else "r2_clipped"
    frames = [f[f[target].notna()] for f in (train, holdout, synthetic)]
    rng = np.random.default_rng(seed)
    n = min(len(frames[0]), len(frames[2]) or len(frames[0]), max_rows)  # no synthetic rows: TSTR scores 0
    tr, ho, sy = frames
    tr = tr.iloc[np.sort(rng.choice(len(tr), n, replace=False))] if len(tr) > n else tr
    sy = sy.iloc[np.sort(rng.choice(len(sy), n, replace=False))] if len(sy) > n else sy
    if not len(ho) or not len(tr):
        out["note"] = "no labelled holdout or train rows"
        return out
    if features:
        enc = MixedEncoder.fit(tr, schema, features, others=[ho, sy], max_categories=max_categories)
        x = {k: enc.features(f) for k, f in (("tr", tr), ("ho", ho), ("sy", sy))}
    else:  # a target alone: constant features, the models learn the marginal
        x = {k: np.zeros((len(f), 1), np.float32) for k, f in (("tr", tr), ("ho", ho), ("sy", sy))}
    lab = MixedEncoder.fit(tr, schema, [target], others=[ho, sy], max_categories=None)
    if classification:
        y = {k: lab.codes(f)[:, 0] for k, f in (("tr", tr), ("ho", ho), ("sy", sy))}
        labels = np.unique(y["ho"])
    else:
        y = {k: lab.scaled(f)[:, 0] for k, f in (("tr", tr), ("ho", ho), ("sy", sy))}

    def score(kind: str, model: Any) -> float:
        if len(y[kind]) == 0 or (classification and len(np.unique(y[kind])) < 2):
            return 0.0
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore")
            model.fit(x[kind], y[kind])
            pred = model.predict(x["ho"])
        if classification:
            return float(f1_score(y["ho"], pred, labels=labels, average="macro", zero_division=0))
        return float(max(r2_score(y["ho"], pred), 0.0)) if len(y["ho"]) > 1 else 0.0

    if classification and (len(y["sy"]) == 0 or len(np.unique(y["sy"])) < 2):
        out["note"] = "synthetic target has fewer than two classes: scored 0"
    from sklearn.base import clone

    for name, model in _models(classification, seed).items():
        out["models"][name] = {"tstr": score("sy", clone(model)), "trtr": score("tr", clone(model))}
    tstr = float(np.mean([v["tstr"] for v in out["models"].values()]))
    trtr = float(np.mean([v["trtr"] for v in out["models"].values()]))
    out["metrics"] = {"tstr_score": tstr, "trtr_score": trtr, "tstr_ratio": tstr / trtr if trtr > 0 else None}
    out["seconds"] = time.perf_counter() - t0
    return out
