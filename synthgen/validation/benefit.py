"""The downstream benefit of synthetic training rows, scored: classifiers trained on the real
train split, on real plus synthetic rows, and on the real split with balanced class weights,
each tested on the untouched real holdout (see :mod:`synthgen.stages.augment_tabular`).

:data:`METRICS` and :data:`ARMS` name what is scored; :func:`summarize` turns per-repeat
records into spreads of each arm and of the paired lifts (tables and images alike).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from synthgen.data.schema import TableSchema
from synthgen.validation.encoding import MixedEncoder, discrete_keys, modelled_columns

METRICS = ("balanced_accuracy", "macro_f1", "minority_recall")
ARMS = ("real", "augmented", "reweighted")


def classifier(name: str, seed: int, balanced: bool) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    weight = "balanced" if balanced else None
    if name == "logistic":
        return LogisticRegression(max_iter=2000, class_weight=weight)
    if name == "random_forest":
        return RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=1, class_weight=weight)
    return HistGradientBoostingClassifier(max_iter=100, random_state=seed, class_weight=weight)


def spread(values: list[float | None]) -> dict[str, float | None]:
    x = np.array([v for v in values if v is not None], dtype=float)
    if not len(x):
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    return {"mean": float(x.mean()), "sd": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
            "min": float(x.min()), "max": float(x.max()), "n": int(len(x))}


def score_once(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame,
    schema: TableSchema,
    target: str,
    minority: Any,
    models: list[str],
    seed: int,
) -> list[dict[str, Any]]:
    """One repeat: every model x arm, scored on the holdout.

    Returns:
        ``[{"model", "arm", "balanced_accuracy", "macro_f1", "minority_recall"}, ...]``
        (``minority_recall`` is None when the holdout has no minority row).
    """
    from threadpoolctl import threadpool_limits

    real, synthetic, holdout = (f[f[target].notna()] for f in (real, synthetic, holdout))
    features = modelled_columns(schema, exclude=[target])
    if features:
        enc = MixedEncoder.fit(real, schema, features, others=[holdout, synthetic])
        x_real, x_syn, x_ho = (enc.features(f) for f in (real, synthetic, holdout))
    else:  # the target alone: constant features
        x_real, x_syn, x_ho = (np.zeros((len(f), 1), np.float32) for f in (real, synthetic, holdout))
    classes = list(dict.fromkeys(discrete_keys(real[target])))
    index = {k: i for i, k in enumerate(classes)}

    def codes(frame: pd.DataFrame) -> np.ndarray:
        return np.array([index.get(k, len(classes)) for k in discrete_keys(frame[target])], dtype=np.int64)

    y_real, y_syn, y_ho = codes(real), codes(synthetic), codes(holdout)
    minority_code = index[discrete_keys(pd.Series([minority], dtype=object))[0]]
    train_sets = {
        "real": (x_real, y_real, False),
        "augmented": (np.vstack([x_real, x_syn]), np.concatenate([y_real, y_syn]), False),
        "reweighted": (x_real, y_real, True),
    }
    rows = []
    for name in models:
        for arm, (x, y, balanced) in train_sets.items():
            model = classifier(name, seed, balanced)
            with warnings.catch_warnings(), threadpool_limits(1):
                warnings.simplefilter("ignore")
                model.fit(x, y)
                pred = model.predict(x_ho)
            rows.append({"model": name, "arm": arm, **holdout_scores(y_ho, pred, minority_code)})
    return rows


def holdout_scores(y_true: np.ndarray, pred: np.ndarray, minority_code: int) -> dict[str, float | None]:
    """:data:`METRICS` of predicted class codes on the holdout: balanced accuracy, macro-F1
    over the classes present in ``y_true``, and the recall of ``minority_code`` (None when
    the holdout has none of it)."""
    from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score

    labels = np.unique(y_true)
    recall = (float(recall_score(y_true, pred, labels=[minority_code], average="macro", zero_division=0))
              if (y_true == minority_code).any() else None)
    return {
        "balanced_accuracy": float(balanced_accuracy_score(y_true, pred)),
        "macro_f1": float(f1_score(y_true, pred, labels=labels, average="macro", zero_division=0)),
        "minority_recall": recall,
    }


def summarize(records: list[dict[str, Any]], models: list[str]) -> dict[str, Any]:
    """Per model and metric: the spread of each arm and of the paired lifts; ``overall``
    is the spread over repeats of the lift averaged over the models."""
    by = {(r["seed"], r["model"], r["arm"]): r for r in records}
    seeds = sorted({r["seed"] for r in records})

    def lift(seed: int, model: str, metric: str, base: str) -> float | None:
        a, b = by[(seed, model, "augmented")][metric], by[(seed, model, base)][metric]
        return None if a is None or b is None else a - b

    summary: dict[str, Any] = {"models": {}, "overall": {}}
    for model in models:
        summary["models"][model] = {
            metric: {
                **{arm: spread([by[(s, model, arm)][metric] for s in seeds]) for arm in ARMS},
                "lift": spread([lift(s, model, metric, "real") for s in seeds]),
                "lift_vs_reweighted": spread([lift(s, model, metric, "reweighted") for s in seeds]),
            }
            for metric in METRICS
        }
    for metric in METRICS:
        per_seed = []
        for s in seeds:
            lifts = [lift(s, m, metric, "real") for m in models]
            per_seed.append(None if any(v is None for v in lifts) else float(np.mean(lifts)))
        summary["overall"][metric] = {"lift": spread(per_seed)}
    return summary
