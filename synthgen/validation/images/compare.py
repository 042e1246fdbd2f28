"""Distribution metrics in one feature space, generated and real holdout alike, and the
metric failures: a generated set that scores *better* than real unseen images.

:func:`space_metrics` scores the generated set and the real holdout against the train
split in one feature space - FID, KID, precision, recall, density, coverage - at the
**same sample size**: FID is biased upwards by about 1/n, and coverage (less so recall)
grows with the number of generated points, so a 400-image generated set compared with a
100-image holdout would look better for nothing. Both sets are cut into disjoint subsets
of ``n = min(n_generated, n_holdout, MAX_MATCHED)`` images (at most :data:`MAX_SUBSETS`
per set, the rest unused; a set of exactly n is used whole, in order) and each metric is
the mean over a set's subsets. The train side is the whole (subsampled) train split:

* FID: Fréchet distance to the Gaussian of the train features (:func:`fid_to_gaussian`);
* KID: unbiased MMD² with the cubic kernel ``(x·y / d + 1)³`` between a subset and at
  most :data:`KID_TRAIN` train rows (one seeded draw): the whole-set estimate, so no
  random subsets are needed (the subsets of :func:`kernel_distance` exist for sets too
  large for one kernel matrix);
* precision, recall, density, coverage: :func:`prdc` with the train k-NN radii computed once.

**Noise.** The holdout's value is itself one noisy draw (100 real images give an FID
that varies by ±20% between draws). :func:`space_metrics` measures that noise by
permutation: the first generated subset and the holdout are pooled and split at random
into two halves of n, :data:`PERMUTATIONS` times, and ``noise_sd`` is the standard
deviation of the difference of a metric between the halves - the spread of
"generated minus holdout" when both are draws from one distribution.

:func:`metric_failures` flags a metric when the generated set beats the holdout by more
than ``max(NOISE_Z · noise_sd, floor)`` (:data:`NOISE_Z` = 3: one-sided, about 0.1% of
fresh real draws per metric if the difference were normal; with 16 permutations the sd
itself is known to ±20%). Floors: FID :data:`FID_FLOOR` × the holdout's FID; shares
(precision, recall, coverage), which are discrete and skewed near 1 so that 16
permutations underrate their tails, at least ``NOISE_Z · sqrt(2 p (1 − p) / n)`` (three
binomial sds of a difference of two shares of n, p the mean of the two) and
:data:`SHARE_FLOOR`. Density is not flagged (it exceeds 1 for real draws). Measured on the
digits at 16 and 32 px (6 seeds; 40/160, 100/100 and 100/400 holdout/generated images;
random and pixel spaces, the judge too at 16 px): without the binomial floor, fresh real
images were flagged on 3 of ~570 comparisons (precision or recall, 100/100); with it, none.
Copies of train images (150-400) are flagged on 2-10 of the 16 metrics. A flagged
metric cannot be trusted for this run: something (copies of train images, a feature
space blind to what the generator gets wrong) makes it read better than real data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from synthgen.validation.images.metrics import (
    KID_DEGREE,
    PRDC_K,
    fid_to_gaussian,
    kernel_offdiag_mean,
    knn_radii,
    mmd2_unbiased,
    prdc,
)

MAX_SUBSETS = 4  # size-matched subsets per set at most (metrics are averaged over them)
MAX_MATCHED = 1000  # subset size at most (larger sets: several subsets, or a subsample)
KID_TRAIN = 1000  # KID: train rows at most (one seeded draw)
PERMUTATIONS = 16  # noise: random halvings of generated subset + holdout
NOISE_Z = 3.0  # metric failure: better than the holdout by this many noise sds ...
FID_FLOOR = 0.05  # ... and FID at least this share of the holdout's FID below it ...
SHARE_FLOOR = 0.02  # ... and precision/recall/coverage at least this much above it
LOWER_IS_BETTER = ("fid", "kid")
HIGHER_IS_BETTER = ("precision", "recall", "coverage")
METRIC_KINDS = ("fid", "kid", "precision", "recall", "density", "coverage")


class Reference:
    """The train features of one space, with what every score against them needs
    (mean and covariance, k-NN radii, KID's rows and their mean kernel) computed once.

    Args:
        train: (n, d) train features, n > :data:`PRDC_K`.
        seed: seeds the KID row draw; default 0.
    """

    def __init__(self, train: np.ndarray, seed: int = 0):
        self.train = np.asarray(train, dtype=np.float64)
        self.mu, self.sigma = self.train.mean(axis=0), np.atleast_2d(np.cov(self.train, rowvar=False))
        self.radii = knn_radii(self.train, PRDC_K)
        rows = np.random.default_rng(seed).permutation(len(self.train))[:KID_TRAIN]
        self.kid_rows = self.train[np.sort(rows)]
        self.kid_mean = kernel_offdiag_mean(self.kid_rows, KID_DEGREE)

    def scores(self, x: np.ndarray) -> dict[str, float]:
        """Every metric kind of (m, d) features ``x`` (m > PRDC_K) against the train features."""
        return {"fid": fid_to_gaussian(x, self.mu, self.sigma),
                "kid": mmd2_unbiased(x, self.kid_rows, KID_DEGREE, kbb_offdiag_mean=self.kid_mean),
                **prdc(self.train, x, PRDC_K, real_radii=self.radii)}


def _subsets(n_rows: int, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Disjoint index sets of size ``n`` (at most MAX_SUBSETS; the whole set in order when n_rows == n)."""
    if n_rows == n:
        return [np.arange(n)]
    order = rng.permutation(n_rows)
    return [np.sort(order[i * n:(i + 1) * n]) for i in range(min(MAX_SUBSETS, n_rows // n))]


def space_metrics(train: np.ndarray, holdout: np.ndarray, generated: np.ndarray,
                  seed: int = 0) -> dict[str, Any]:
    """Generated and holdout scored against train in one feature space, size-matched,
    with the permutation noise of their difference (see the module docstring).

    Args:
        train, holdout, generated: (n, d) features, more than :data:`PRDC_K` rows each
            (callers subsample large sets).
        seed: seeds the subsets, the KID rows and the permutations; default 0.

    Returns:
        ``{"generated", "holdout", "noise_sd"}`` (each ``{kind: value}`` for every kind of
        :data:`METRIC_KINDS`; generated and holdout are means over their subsets) and
        ``"n"`` (the subset size) and ``"subsets"`` (generated, holdout).
    """
    rng = np.random.default_rng(seed)
    reference = Reference(train, seed)
    n = min(len(holdout), len(generated), MAX_MATCHED)
    out: dict[str, Any] = {"n": n}
    firsts = []
    for side, features in (("generated", generated), ("holdout", holdout)):
        subsets = _subsets(len(features), n, rng)
        rows = [reference.scores(features[idx]) for idx in subsets]
        out[side] = {k: float(np.mean([r[k] for r in rows])) for k in METRIC_KINDS}
        out.setdefault("subsets", []).append(len(subsets))
        firsts.append(features[subsets[0]])
    pool = np.concatenate(firsts)
    diffs = []
    for _ in range(PERMUTATIONS):
        perm = rng.permutation(len(pool))
        a, b = reference.scores(pool[perm[:n]]), reference.scores(pool[perm[n:]])
        diffs.append([a[k] - b[k] for k in METRIC_KINDS])
    out["noise_sd"] = dict(zip(METRIC_KINDS, np.std(diffs, axis=0, ddof=1).tolist()))
    return out


def metric_failures(scored: dict[str, Any], names: dict[str, str], space: str) -> list[dict[str, Any]]:
    """The metrics of one space on which the generated set beats the real holdout beyond noise.

    Args:
        scored: the result of :func:`space_metrics`.
        names: metric kind -> the name it has in the report (e.g. ``fid`` -> ``fid_random``).
        space: ``judge``, ``random`` or ``pixel`` (named in the reason).

    Returns:
        ``[{"name", "space", "generated", "holdout", "margin", "reason"}]``.
    """
    out = []
    for kind, name in names.items():
        gen, hold, sd = scored["generated"][kind], scored["holdout"][kind], scored["noise_sd"][kind]
        if kind == "fid":
            floor = FID_FLOOR * abs(hold)
        elif kind in HIGHER_IS_BETTER:  # shares: discrete, skewed near 1; three binomial sds of a difference
            pooled = min(max((gen + hold) / 2.0, 0.0), 1.0)
            floor = max(SHARE_FLOOR, NOISE_Z * math.sqrt(2.0 * pooled * (1.0 - pooled) / max(scored["n"], 1)))
        else:
            floor = 0.0
        margin = max(NOISE_Z * sd, floor)
        if kind in LOWER_IS_BETTER and gen < hold - margin:
            reason = (f"{name} {gen:.4g} is lower than real unseen images' {hold:.4g} (noise margin {margin:.3g}): "
                      f"in the {space} features this set is closer to the train split than real data is "
                      "(copies of train images, or features blind to its flaws)")
        elif kind in HIGHER_IS_BETTER and gen > hold + margin:
            reason = (f"{name} {gen:.4g} is above real unseen images' {hold:.4g} (noise margin {margin:.3g}): "
                      f"in the {space} features generated images sit closer to the train images than real "
                      "unseen ones do (copies of train images, or features blind to its flaws)")
        else:
            continue
        out.append({"name": name, "space": space, "generated": gen, "holdout": hold, "margin": margin,
                    "reason": reason})
    return out
