"""Privacy of a synthetic table against the real train split and the holdout.

All distances are SDMetrics' distance to closest record (DCR, in [0, 1]: the mean over
modelled columns of ``|Δ|/range`` for numbers and dates, 0/1 mismatch for categories;
see :mod:`synthgen.validation.encoding`), on one encoding fitted on the train split so
that distances to train and to holdout are comparable. Nearest neighbours are found
with :func:`~synthgen.validation.encoding.nearest` (vectorized, torch).

Metrics of :func:`privacy_report` (``None`` when not computable, e.g. without holdout):

* ``exact_copy_rate``: share of synthetic rows identical to some train row over the
  modelled columns (all rows, by row hashes).
* ``dcr_synthetic_median``: median DCR synthetic -> train.
* ``dcr_holdout_median``: median DCR holdout -> train (what "never seen" looks like).
* ``dcr_baseline_protection``: SDMetrics' DCRBaselineProtection,
  ``min(median DCR(synthetic->train) / median DCR(random->train), 1)``, random rows
  uniform within the train ranges and over the train levels, missing at the train
  rates (1 is best).
* ``dcr_overfitting_share``: share of synthetic rows closer to train than to the
  holdout (ties count one half; 0.5 is ideal, 1 is a copy). The larger of train and
  holdout is subsampled to the size of the other, so that a fair generator scores 0.5
  whatever the split (SDMetrics instead warns when the holdout is under half the train
  size, and counts ties as closer to the holdout).
* ``dcr_overfitting_protection``: SDMetrics' ``min(2 (1 - share), 1)``.
* ``nndr``: median over synthetic rows of nearest / second-nearest DCR to train
  (0/0 counts 1: a row equally close to several records singles none out; small is risky).
* ``mia_auc_distance``: ROC AUC of a membership-inference attack scoring a real row
  by minus its DCR to the nearest synthetic row, train rows as members and holdout rows
  as non-members (as many members as non-members).
* ``mia_auc_density``: DOMIAS-style attack, score ``log p_syn(x) / p_ref(x)`` with
  k-nearest-neighbour densities (``p ∝ 1 / r_k^d``, so the score ranks as
  ``log r_k,ref - log r_k,syn``) where the reference is the holdout, each holdout row
  leaving itself out.
* ``mia_auc``: the stronger of the two (max AUC; 0.5 is ideal, 1 a copy).
* ``attribute_risk_<col>`` for each sensitive column, and their max ``attribute_risk``:
  anonymeter's inference risk. The attacker knows every other modelled column of a
  target row and guesses the secret as the value of the nearest synthetic row (DCR
  over the other columns); a guess is right when equal (categories, missing == missing)
  or within ``tolerance`` × train range (numbers). Risk =
  ``(rate on train targets - rate on holdout controls) / (1 - rate on controls)``,
  clipped to [0, 1].

Query rows are subsampled to at most ``max_rows`` (DCR medians, shares, NNDR) and the
attacks to ``n_attack`` targets per side; references (train, synthetic) are used whole.

Memory: categoricals are encoded under the level cap of training (``max_categories``,
default :data:`~synthgen.validation.encoding.MAX_CATEGORIES`), with each pooled value's
own code kept so that distances stay exact (:class:`~synthgen.validation.encoding.Encoded`);
an encoded table is at most rows x (numbers x 3 + columns x ``max_categories``) float32,
and neighbour searches work in blocks of :data:`~synthgen.validation.encoding.NN_BLOCK_BYTES`.
The synthetic table is never held encoded whole: as a reference (the attacks) it is
searched a block at a time, and :func:`privacy_filter` encodes its queries a block at a time.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import pandas as pd

from synthgen.data.schema import TableSchema
from synthgen.errors import DataError
from synthgen.validation.encoding import (
    MAX_CATEGORIES, NN_BLOCK_BYTES, Encoded, MixedEncoder, modelled_columns, nearest, nearest_in_blocks, normalized,
)

PRIVACY_METRICS = (
    "exact_copy_rate", "dcr_synthetic_median", "dcr_holdout_median", "dcr_baseline_protection",
    "dcr_overfitting_share", "dcr_overfitting_protection", "nndr",
    "mia_auc", "mia_auc_distance", "mia_auc_density", "attribute_risk",
)  # fmt: skip
_EPS = 1e-6  # added to kNN radii before taking logs


def _sample(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted row positions: all of ``range(n)`` or ``size`` of them without replacement."""
    return np.arange(n) if n <= size else np.sort(rng.choice(n, size, replace=False))


def _auc(members: np.ndarray, non_members: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if not len(members) or not len(non_members):
        return None
    labels = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
    return float(roc_auc_score(labels, np.r_[members, non_members]))


def _row_hashes(frame: pd.DataFrame, schema: TableSchema, columns: Sequence[str]) -> np.ndarray:
    return pd.util.hash_pandas_object(normalized(frame, schema, columns), index=False).to_numpy()


def exact_copy_rate(synthetic: pd.DataFrame, train: pd.DataFrame, schema: TableSchema) -> float | None:
    """Share of synthetic rows identical to some train row over the modelled columns.

    Rows are compared by 64-bit hashes of their normalized values (numbers as float64,
    categories as text keys, missing == missing); ``None`` for an empty synthetic table.
    """
    if not len(synthetic):
        return None
    cols = modelled_columns(schema)
    return float(np.isin(_row_hashes(synthetic, schema, cols), _row_hashes(train, schema, cols)).mean())


def random_baseline(train: pd.DataFrame, schema: TableSchema, n: int, seed: int = 0) -> pd.DataFrame:
    """SDMetrics' random baseline: per column uniform in the train range (numbers and
    dates) or over the train levels (categories), missing at the train rate."""
    rng = np.random.default_rng(seed)
    enc = MixedEncoder.fit(train, schema, max_categories=None)  # ranges and columns only: nothing encoded
    out: dict[str, Any] = {}
    for j, c in enumerate(enc.numeric):
        values = enc.lo[j] + enc.span[j] * rng.random(n)
        if schema[c].kind == "datetime":
            values = pd.to_datetime(values, unit="s")
        out[c] = pd.Series(values)
    for c in enc.discrete:
        levels = train[c].dropna().unique()
        out[c] = pd.Series(rng.choice(levels, n) if len(levels) else [None] * n, dtype=object)
    for c, s in out.items():
        s[rng.random(n) < train[c].isna().mean()] = None
    return pd.DataFrame(out)[enc.columns]


def _stack(parts: Sequence[Encoded]) -> Encoded:
    pooled = None if parts[0].pooled is None else np.vstack([p.pooled for p in parts])
    return Encoded(np.vstack([p.x for p in parts]), pooled, parts[0].unit)


def _mia(enc: MixedEncoder, x_train: Encoded, x_hold: Encoded, synthetic: pd.DataFrame, *,
         n_attack: int, density_k: int, rng: np.random.Generator) -> dict[str, float | None]:
    """Distance and density-ratio membership inference AUCs (module docstring)."""
    n = min(n_attack, len(x_hold), len(x_train))
    if n < 2 or density_k >= len(x_hold) or not len(synthetic):
        return {"mia_auc_distance": None, "mia_auc_density": None, "mia_auc": None}
    members = _sample(len(x_train), n, rng)
    non_members = _sample(len(x_hold), n, rng)
    w = enc.l2_weights()
    queries = _stack([x_train.take(members), x_hold.take(non_members)])
    d_syn, _ = nearest_in_blocks(queries, enc.encode_blocks(synthetic), density_k, weights=w)
    d_ref, i_ref = nearest(queries, x_hold, density_k + 1, weights=w)
    self_idx = np.r_[np.full(n, -1), non_members]  # holdout rows leave themselves out
    d_ref = np.where(i_ref == self_idx[:, None], np.inf, d_ref)
    r_ref = np.sort(d_ref, axis=1)[:, density_k - 1]
    dist_score = -d_syn[:, 0]
    dens_score = np.log(r_ref + _EPS) - np.log(d_syn[:, density_k - 1] + _EPS)
    auc_d = _auc(dist_score[:n], dist_score[n:])
    auc_p = _auc(dens_score[:n], dens_score[n:])
    return {"mia_auc_distance": auc_d, "mia_auc_density": auc_p, "mia_auc": max(auc_d, auc_p)}


def attribute_risk(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    column: str,
    *,
    n_attack: int = 2000,
    tolerance: float = 0.05,
    seed: int = 0,
    max_categories: int | None = MAX_CATEGORIES,
) -> dict[str, float | None]:
    """anonymeter-style inference risk of one sensitive column (module docstring).

    Args:
        train: the real train split (targets, members).
        holdout: the real holdout (controls).
        synthetic: the attacker's data.
        schema: the table schema.
        column: the sensitive (secret) column; the attacker knows all other modelled ones.
        n_attack: targets and controls, each; default 2000.
        tolerance: numbers count as guessed when within ``tolerance`` × train range;
            default 0.05.
        seed: seed of the target sampling; default 0.
        max_categories: level cap of the known columns' encoding (module docstring);
            the secret is compared level by level, never pooled.

    Returns:
        ``{"risk", "attack_rate", "control_rate"}``; all None when there is no other
        column, no synthetic row, or no target/control row.
    """
    none = {"risk": None, "attack_rate": None, "control_rate": None}
    known = modelled_columns(schema, exclude=[column])
    if not known or not len(synthetic) or not len(train) or not len(holdout):
        return none
    rng = np.random.default_rng(seed)
    targets = train.iloc[_sample(len(train), n_attack, rng)]
    controls = holdout.iloc[_sample(len(holdout), n_attack, rng)]
    enc = MixedEncoder.fit(train, schema, known, others=[synthetic, holdout], max_categories=max_categories)
    secret = MixedEncoder.fit(train, schema, [column], others=[synthetic, holdout], max_categories=None)
    _, idx = nearest_in_blocks(enc.encode(pd.concat([targets, controls])), enc.encode_blocks(synthetic), 1,
                               weights=enc.l2_weights())
    if secret.numeric:
        truth, guess = secret.scaled(pd.concat([targets, controls]))[:, 0], secret.scaled(synthetic)[idx[:, 0], 0]
        right = (np.abs(truth - guess) <= tolerance) | (np.isnan(truth) & np.isnan(guess))
    else:
        right = secret.codes(pd.concat([targets, controls]))[:, 0] == secret.codes(synthetic)[idx[:, 0], 0]
    attack, control = float(right[: len(targets)].mean()), float(right[len(targets) :].mean())
    risk = 0.0 if control >= 1.0 else float(np.clip((attack - control) / (1.0 - control), 0.0, 1.0))
    return {"risk": risk, "attack_rate": attack, "control_rate": control}


def privacy_report(
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    holdout: pd.DataFrame | None = None,
    sensitive: Sequence[str] = (),
    *,
    max_rows: int = 5000,
    n_attack: int = 2000,
    density_k: int = 5,
    tolerance: float = 0.05,
    seed: int = 0,
    max_categories: int | None = MAX_CATEGORIES,
) -> dict[str, Any]:
    """Every privacy metric of the module docstring.

    Args:
        train: the real train split.
        synthetic: the synthetic table.
        schema: the table schema (modelled columns are compared).
        holdout: the real holdout; without it the holdout-based metrics are None.
        sensitive: columns for attribute-inference risk; default none.
        max_rows: query rows sampled for DCR medians, the overfitting share and NNDR;
            default 5000.
        n_attack: members and non-members (and attribute targets and controls) sampled
            per side; default 2000.
        density_k: neighbours of the kNN densities of the density-ratio attack; default 5.
        tolerance: attribute guesses on numbers within ``tolerance`` × range are right;
            default 0.05.
        seed: seed of every subsample and of the random baseline; default 0.
        max_categories: the level cap of the encoding (``data.max_categories``; module
            docstring); ``None`` keeps every level.

    Returns:
        ``{"metrics": {name: value}, "attribute": {col: {...}}, "seconds": {part: s}}``.

    Raises:
        DataError: a sensitive column is not a modelled column of the schema.
    """
    bad = [c for c in sensitive if c not in modelled_columns(schema)]
    if bad:
        raise DataError(f"sensitive column {bad[0]!r} is not a modelled column of the table")
    rng = np.random.default_rng(seed)
    seconds: dict[str, float] = {}
    m: dict[str, float | None] = dict.fromkeys([*PRIVACY_METRICS, *(f"attribute_risk_{c}" for c in sensitive)])
    has_holdout = holdout is not None and len(holdout) > 0

    t = time.perf_counter()
    m["exact_copy_rate"] = exact_copy_rate(synthetic, train, schema)
    seconds["exact_copy_rate"] = time.perf_counter() - t

    t = time.perf_counter()
    enc = MixedEncoder.fit(train, schema, others=[synthetic] + ([holdout] if has_holdout else []),
                           max_categories=max_categories)
    w = enc.l2_weights()
    x_train = enc.encode(train)
    x_hold = enc.encode(holdout) if has_holdout else None
    seconds["encode"] = time.perf_counter() - t
    if not len(synthetic) or not len(x_train):
        return {"metrics": m, "attribute": {}, "seconds": seconds}

    t = time.perf_counter()
    q_syn = enc.encode(synthetic.iloc[_sample(len(synthetic), max_rows, rng)])
    d_syn, _ = nearest(q_syn, x_train, 2, weights=w)
    m["dcr_synthetic_median"] = float(np.median(d_syn[:, 0]))
    if d_syn.shape[1] == 2:
        d1, d2 = d_syn[:, 0], d_syn[:, 1]
        m["nndr"] = float(np.median(np.where(d2 > 0, d1 / np.where(d2 > 0, d2, 1.0), 1.0)))
    seconds["dcr_synthetic_median+nndr"] = time.perf_counter() - t

    t = time.perf_counter()
    baseline = enc.encode(random_baseline(train, schema, len(q_syn), seed))
    d_rand = float(np.median(nearest(baseline, x_train, 1, weights=w)[0]))
    m["dcr_baseline_protection"] = min(m["dcr_synthetic_median"] / d_rand, 1.0) if d_rand > 0 else None
    seconds["dcr_baseline_protection"] = time.perf_counter() - t

    attribute: dict[str, Any] = {}
    if has_holdout:
        t = time.perf_counter()
        q_hold = x_hold.take(_sample(len(x_hold), max_rows, rng))
        m["dcr_holdout_median"] = float(np.median(nearest(q_hold, x_train, 1, weights=w)[0]))
        seconds["dcr_holdout_median"] = time.perf_counter() - t

        t = time.perf_counter()
        size = min(len(x_train), len(x_hold))
        ref_train = x_train.take(_sample(len(x_train), size, rng))
        ref_hold = x_hold.take(_sample(len(x_hold), size, rng))
        to_train = nearest(q_syn, ref_train, 1, weights=w)[0][:, 0]
        to_hold = nearest(q_syn, ref_hold, 1, weights=w)[0][:, 0]
        share = float(np.mean((to_train < to_hold) + 0.5 * (to_train == to_hold)))
        m["dcr_overfitting_share"] = share
        m["dcr_overfitting_protection"] = min(2.0 * (1.0 - share), 1.0)
        seconds["dcr_overfitting_share"] = time.perf_counter() - t

        t = time.perf_counter()
        m.update(_mia(enc, x_train, x_hold, synthetic, n_attack=n_attack, density_k=density_k, rng=rng))
        seconds["mia_auc"] = time.perf_counter() - t

        t = time.perf_counter()
        for col in sensitive:
            attribute[col] = attribute_risk(train, holdout, synthetic, schema, col,
                                            n_attack=n_attack, tolerance=tolerance, seed=seed,
                                            max_categories=max_categories)
            m[f"attribute_risk_{col}"] = attribute[col]["risk"]
        risks = [a["risk"] for a in attribute.values() if a["risk"] is not None]
        m["attribute_risk"] = max(risks) if risks else None
        seconds["attribute_risk"] = time.perf_counter() - t
    return {"metrics": m, "attribute": attribute, "seconds": seconds}


def privacy_filter(
    synthetic: pd.DataFrame,
    train: pd.DataFrame,
    threshold: float,
    schema: TableSchema | None = None,
    max_categories: int | None = MAX_CATEGORIES,
) -> tuple[pd.DataFrame, int]:
    """Drop synthetic rows whose DCR to the train split is below ``threshold``.

    The synthetic rows are encoded and searched a block at a time (at most
    :data:`~synthgen.validation.encoding.NN_BLOCK_BYTES` of encoding per block), so a
    large synthetic table never has its encoding held whole.

    Args:
        synthetic: the synthetic table.
        train: the real train split.
        threshold: the smallest DCR kept (in [0, 1]; 0 keeps everything, a tiny
            positive value drops exact copies).
        schema: the table schema; default inferred from ``train``.
        max_categories: the level cap of the encoding (``data.max_categories``; module
            docstring); ``None`` keeps every level.

    Returns:
        ``(kept, n_dropped)``: the kept rows (original index and order) and how many
        were dropped.
    """
    if schema is None:
        from synthgen.data.schema import infer_schema

        schema = infer_schema(train)
    if not len(synthetic) or not len(train) or threshold <= 0:
        return synthetic, 0
    enc = MixedEncoder.fit(train, schema, others=[synthetic], max_categories=max_categories)
    reference, w = enc.encode(train), enc.l2_weights()
    block = max(1, NN_BLOCK_BYTES // (4 * max(enc.width, 1)))
    dcr = np.concatenate([
        nearest(enc.encode(synthetic.iloc[s : s + block]), reference, 1, weights=w)[0][:, 0]
        for s in range(0, len(synthetic), block)
    ])
    keep = dcr >= threshold
    return synthetic[keep], int((~keep).sum())
