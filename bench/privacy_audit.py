"""Empirical privacy audit: plant a canary, train with and without DP, attack the output.

A *canary* is a record unlike any real one: a Chinstrap penguin from an island no real
penguin lives on, at the corners of every numeric range. Each trial trains a
``tabular_gan`` on the penguins table either WITH the canary inserted ``--copies`` times
("in") or without it ("out"), samples ``--rows`` synthetic rows, and scores the share of
them on the canary's island (:func:`score`). A membership-inference attacker who sees
only the synthetic data guesses "in" when the score passes a threshold.

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

``--model dp_marginals`` audits that family the same way (its defaults, ``species`` as the
target; no "no DP" setting, since the family has none: a large epsilon such as 100 shows
the attack's power against it instead).

Usage (results in BENCHMARKS.md, "Empirical privacy audit")::

    python bench/privacy_audit.py --trials 12 --epsilons 1 3 --out bench/results/privacy_audit.json
    python bench/privacy_audit.py --model dp_marginals --trials 10 --epsilons 1 3 100 \
        --out bench/results/privacy_audit_dp_marginals.json
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

from synthgen.config import MarginalsModelConfig, PrivacyConfig, TabularModelConfig
from synthgen.data.schema import conform, infer_schema
from synthgen.synthesizers import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
CANARY_ISLAND = "Anvers"  # no real penguin of the table lives there


def canary(real: pd.DataFrame) -> pd.DataFrame:
    """One row unlike any real one: a Chinstrap from an island no real penguin lives on
    (:data:`CANARY_ISLAND`), every measurement at a corner of its range."""
    row = {"species": "Chinstrap", "island": CANARY_ISLAND, "sex": "female", "year": 2008,
           "bill_length_mm": real["bill_length_mm"].max(), "bill_depth_mm": real["bill_depth_mm"].min(),
           "flipper_length_mm": real["flipper_length_mm"].min(), "body_mass_g": real["body_mass_g"].max()}
    return pd.DataFrame([row])[list(real.columns)]


def score(synthetic: pd.DataFrame, target: pd.Series) -> float:
    """The attacker's statistic: the share of synthetic rows on the canary's island.

    The island is in the declared-public domain of every trial, so a model trained
    without the canary has seen no row of it; one trained with it has seen ``--copies``."""
    return float((synthetic["island"].astype(str) == target["island"]).mean())


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
        tnr_lo, fnr_hi = 1 - fpr_hi, 1 - tpr_lo  # the same inequality for the other two error rates
        if tnr_lo - delta > 0 and fnr_hi > 0:
            candidates.append(math.log((tnr_lo - delta) / fnr_hi))
        eps = max(candidates, default=0.0)
        if eps > best["epsilon_lb"]:
            best = {"epsilon_lb": eps, "threshold": t, "tpr": tp / n_in, "fpr": fp / n_out}
    ceiling_lo, _ = clopper_pearson(n_in, n_in, confidence)
    _, ceiling_hi = clopper_pearson(0, n_out, confidence)
    best["ceiling"] = math.log((ceiling_lo - delta) / ceiling_hi) if ceiling_lo > delta else 0.0
    return best


def attack_auc(scores_in: list[float], scores_out: list[float]) -> float:
    """Probability that an "in" score beats an "out" score (ties count half): the attack's AUC."""
    wins = sum((a > b) + 0.5 * (a == b) for a in scores_in for b in scores_out)
    return wins / (len(scores_in) * len(scores_out))


def summarize(results: dict[str, Any]) -> None:
    """Print one line per setting (also for a saved results file: ``--summarize FILE``)."""
    for name, s in results["settings"].items():
        auc = attack_auc(s["scores_in"], s["scores_out"])
        print(f"{name}: score in {s['score_in_mean']:.4f} ± {s['score_in_sd']:.4f}, out {s['score_out_mean']:.4f} ± "
              f"{s['score_out_sd']:.4f}; attack AUC {auc:.2f}; best threshold TPR {s['tpr']} FPR {s['fpr']}; "
              f"empirical epsilon >= {s['epsilon_lb']:.2f} (ceiling with {len(s['scores_in'])} trials: "
              f"{s['ceiling']:.2f}); claimed {s['claimed_epsilon']}, spent {s['epsilon_spent_mean']}")


def run_trial(real: pd.DataFrame, planted: pd.DataFrame, schema: Any, inside: bool, seed: int,
              epsilon: float | None, args: argparse.Namespace) -> tuple[float, float, float | None]:
    table = pd.concat([real] + [planted] * args.copies, ignore_index=True) if inside else real
    table = conform(table, schema)
    if args.model == "dp_marginals":  # its own defaults (rounds, bins) for the table
        config = MarginalsModelConfig(name="dp_marginals", seed=seed, device="cpu")
    else:
        config = TabularModelConfig(name=args.model, epochs=args.epochs, seed=seed, device="cpu")
    privacy = PrivacyConfig(epsilon=epsilon) if epsilon is not None else PrivacyConfig()
    start = time.perf_counter()
    model = REGISTRY[args.model](schema, config, privacy).fit(table)
    synthetic = model.sample(args.rows, seed=seed + 10_000)
    spent = model.extra_meta().get("epsilon_spent")
    return score(synthetic, planted.iloc[0]), time.perf_counter() - start, spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "penguins.csv"))
    parser.add_argument("--trials", type=int, default=12, help="in/out pairs per setting (default 12)")
    parser.add_argument("--epsilons", type=float, nargs="*", default=[1.0, 3.0], help="DP settings (default 1 3)")
    parser.add_argument("--copies", type=int, default=5, help="times the canary is inserted (default 5)")
    parser.add_argument("--model", default="tabular_gan", choices=["tabular_gan", "dp_marginals"],
                        help="the family audited (default tabular_gan; dp_marginals: its default rounds and "
                             "bins, target species, DP settings only - it has no non-private mode)")
    parser.add_argument("--epochs", type=int, default=300,
                        help="tabular_gan: epochs of one step on penguins (default 300)")
    parser.add_argument("--rows", type=int, default=2000, help="synthetic rows per trial (default 2000)")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--summarize", default=None, metavar="FILE", help="only print the summary of a saved run")
    args = parser.parse_args()
    if args.summarize:
        summarize(json.loads(Path(args.summarize).read_text()))
        return
    torch.set_num_threads(args.threads)

    real = pd.read_csv(args.data)
    planted = canary(real)
    target = "species" if args.model == "dp_marginals" else None  # dp_marginals' default start: the target's pairs
    schema = infer_schema(pd.concat([real, planted], ignore_index=True), source=args.data, target=target)
    delta = 1.0 / (10 * (len(real) + args.copies))
    results: dict[str, Any] = {"command": "python bench/" + Path(__file__).name, "args": vars(args),
                               "delta": delta, "settings": {}}
    results["model"] = args.model
    for epsilon in ([] if args.model == "dp_marginals" else [None]) + list(args.epsilons):
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
    summarize(results)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
