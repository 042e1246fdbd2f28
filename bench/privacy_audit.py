"""Empirical privacy audit: plant a canary, train with and without DP, attack the output.

A *canary* is a record unlike any real one: a Chinstrap penguin from Biscoe island (no
real Chinstrap lives there) at the corners of every numeric range. Each trial trains a
``tabular_gan`` on the penguins table either WITH the canary inserted ``--copies`` times
("in") or without it ("out"), samples ``--rows`` synthetic rows, and scores how many of
them look like the canary (its species and island, weighted up by how many numeric
columns lie within ``--radius`` of the canary's values: :func:`score`). A membership-inference
attacker who sees only the synthetic data guesses "in" when the score passes a threshold.

Over ``--trials`` in/out pairs per setting we get the attack's true and false positive
rates at every threshold and, from them, an empirical lower bound on epsilon: a mechanism
that is (epsilon, delta)-DP must satisfy ``TPR <= e^epsilon * FPR + delta`` (and the same
with the roles of the two errors swapped), so

    epsilon_lb = max over thresholds of log((TPR_low - delta) / FPR_high)

with Clopper-Pearson bounds (``--confidence``, one-sided) so that the bound holds with that
confidence given the trials. The threshold is chosen on the same trials, which favours the
attacker (the bound is optimistic for the attack, i.e. conservative for the DP claim).

What it can show: that the non-private model leaks the canary (the attack has power), and
whether the DP runs leak more than their claimed epsilon allows *for this attack*. What it
cannot show: that the claimed epsilon holds. A lower bound below the claim is consistent
with the claim, not a proof of it; with ``n`` trials per side even a perfect attack cannot
certify more than about ``log(n)``-ish epsilon, so the bound's ceiling is printed too.

The schema (category sets, numeric bounds) is inferred once from the real table plus the
canary and declared public for every trial, so "in" and "out" runs differ only in the rows.

Usage (results in BENCHMARKS.md, "Empirical privacy audit")::

    python bench/privacy_audit.py --trials 12 --epsilons 1 3 --out bench/results/privacy_audit.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from synthgen.config import PrivacyConfig, TabularModelConfig
from synthgen.data.schema import conform, infer_schema
from synthgen.synthesizers import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


def canary(real: pd.DataFrame) -> pd.DataFrame:
    """One row unlike any real one: Chinstrap on Biscoe, every measurement at a range corner."""
    row = {"species": "Chinstrap", "island": "Biscoe", "sex": "female", "year": 2008,
           "bill_length_mm": real["bill_length_mm"].max(), "bill_depth_mm": real["bill_depth_mm"].min(),
           "flipper_length_mm": real["flipper_length_mm"].min(), "body_mass_g": real["body_mass_g"].max()}
    return pd.DataFrame([row])[list(real.columns)]


def score(synthetic: pd.DataFrame, target: pd.Series, ranges: dict[str, float], radius: float) -> float:
    """The attacker's statistic: share of synthetic rows with the canary's species and island
    (a combination no real row has), weighted up by how close their numbers come to the
    canary's (1 + the share of numeric columns within ``radius`` of its public range)."""
    combo = ((synthetic["species"].astype(str) == target["species"])
             & (synthetic["island"].astype(str) == target["island"])).to_numpy()
    near = np.zeros(len(synthetic))
    for col in NUMERIC:
        values = pd.to_numeric(synthetic[col], errors="coerce").to_numpy(dtype=float)
        near += np.abs(values - float(target[col])) <= radius * ranges[col]
    return float((combo * (1 + near / len(NUMERIC))).mean())


def clopper_pearson(k: int, n: int, confidence: float) -> tuple[float, float]:
    """One-sided (lower, upper) Clopper-Pearson bounds of a binomial proportion."""
    from scipy.stats import beta

    alpha = 1 - confidence
    low = 0.0 if k == 0 else float(beta.ppf(alpha, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha, k + 1, n - k))
    return low, high


def epsilon_lower_bound(scores_in: list[float], scores_out: list[float], delta: float,
                        confidence: float) -> dict[str, Any]:
    """The best threshold's empirical epsilon lower bound, its TPR/FPR, and the bound's ceiling."""
    n_in, n_out = len(scores_in), len(scores_out)
    best = {"epsilon_lb": 0.0, "threshold": None, "tpr": None, "fpr": None}
    for t in sorted(set(scores_in) | set(scores_out)):
        tp = sum(s >= t for s in scores_in)
        fp = sum(s >= t for s in scores_out)
        tpr_lo, tpr_hi = clopper_pearson(tp, n_in, confidence)
        fpr_lo, fpr_hi = clopper_pearson(fp, n_out, confidence)
        candidates = []
        if tpr_lo - delta > 0 and fpr_hi > 0:
            candidates.append(math.log((tpr_lo - delta) / fpr_hi))
        if (1 - fpr_lo) - delta > 0 and (1 - tpr_hi) > 0:
            candidates.append(math.log(((1 - fpr_lo) - delta) / (1 - tpr_hi)))
        eps = max(candidates, default=0.0)
        if eps > best["epsilon_lb"]:
            best = {"epsilon_lb": eps, "threshold": t, "tpr": tp / n_in, "fpr": fp / n_out}
    ceiling_lo, _ = clopper_pearson(n_in, n_in, confidence)
    _, ceiling_hi = clopper_pearson(0, n_out, confidence)
    best["ceiling"] = math.log((ceiling_lo - delta) / ceiling_hi) if ceiling_lo > delta else 0.0
    return best


def run_trial(real: pd.DataFrame, planted: pd.DataFrame, schema: Any, inside: bool, seed: int,
              epsilon: float | None, args: argparse.Namespace) -> tuple[float, float, float | None]:
    table = pd.concat([real] + [planted] * args.copies, ignore_index=True) if inside else real
    table = conform(table, schema)
    config = TabularModelConfig(name="tabular_gan", epochs=args.epochs, seed=seed, device="cpu")
    privacy = PrivacyConfig(epsilon=epsilon) if epsilon is not None else PrivacyConfig()
    start = time.perf_counter()
    model = REGISTRY["tabular_gan"](schema, config, privacy).fit(table)
    synthetic = model.sample(args.rows, seed=seed + 10_000)
    spent = model.extra_meta().get("epsilon_spent")
    ranges = {c: float(schema[c].max - schema[c].min) for c in NUMERIC}
    return score(synthetic, planted.iloc[0], ranges, args.radius), time.perf_counter() - start, spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "penguins.csv"))
    parser.add_argument("--trials", type=int, default=12, help="in/out pairs per setting (default 12)")
    parser.add_argument("--epsilons", type=float, nargs="*", default=[1.0, 3.0], help="DP settings (default 1 3)")
    parser.add_argument("--copies", type=int, default=5, help="times the canary is inserted (default 5)")
    parser.add_argument("--epochs", type=int, default=300, help="epochs of one step on penguins (default 300)")
    parser.add_argument("--rows", type=int, default=2000, help="synthetic rows per trial (default 2000)")
    parser.add_argument("--radius", type=float, default=0.15, help="nearness, share of each public range (default 0.15)")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    real = pd.read_csv(args.data)
    planted = canary(real)
    schema = infer_schema(pd.concat([real, planted], ignore_index=True), source=args.data)
    delta = 1.0 / (10 * (len(real) + args.copies))
    results: dict[str, Any] = {"command": "python bench/" + Path(__file__).name, "args": vars(args),
                               "delta": delta, "settings": {}}
    for epsilon in [None, *args.epsilons]:
        name = "no DP" if epsilon is None else f"DP epsilon={epsilon:g}"
        scores: dict[str, list[float]] = {"in": [], "out": []}
        seconds, spent = [], []
        for trial in range(args.trials):
            for side in ("in", "out"):
                value, took, eps = run_trial(real, planted, schema, side == "in", trial, epsilon, args)
                scores[side].append(value)
                seconds.append(took)
                if eps is not None:
                    spent.append(eps)
            print(f"{name}: trial {trial + 1}/{args.trials} in={scores['in'][-1]:.4f} out={scores['out'][-1]:.4f}",
                  flush=True)
        bound = epsilon_lower_bound(scores["in"], scores["out"], delta, args.confidence)
        results["settings"][name] = {
            "claimed_epsilon": epsilon, "epsilon_spent_mean": float(np.mean(spent)) if spent else None,
            "scores_in": scores["in"], "scores_out": scores["out"],
            "score_in_mean": float(np.mean(scores["in"])), "score_in_sd": float(np.std(scores["in"], ddof=1)),
            "score_out_mean": float(np.mean(scores["out"])), "score_out_sd": float(np.std(scores["out"], ddof=1)),
            **bound, "train_seconds_median": float(np.median(seconds)),
        }
        s = results["settings"][name]
        print(f"{name}: score in {s['score_in_mean']:.4f} ± {s['score_in_sd']:.4f}, out {s['score_out_mean']:.4f} ± "
              f"{s['score_out_sd']:.4f}; best threshold TPR {s['tpr']} FPR {s['fpr']}; empirical epsilon >= "
              f"{s['epsilon_lb']:.2f} (ceiling with {args.trials} trials: {s['ceiling']:.2f}); claimed {epsilon}",
              flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
