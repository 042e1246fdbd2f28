"""A shared numeric encoding of mixed tables, and vectorized nearest-neighbour search.

:class:`MixedEncoder` turns the modelled columns of a table into a float matrix whose
L1 distance *is* SDMetrics' distance to closest record (DCR)::

    DCR(x, y) = mean over columns of  min(|x_c - y_c| / range_c, 1)   (numbers, dates)
                                      1[x_c != y_c]                   (categories, booleans)

with missing == missing at distance 0 and missing vs present at distance 1. The
layout, for ``n`` modelled columns:

* a number becomes ``v = (x - min) / range`` (min and range of the reference table,
  range 0 read as 1), clamped to [0, 1]; a number column with missing values becomes
  three coordinates ``(v/2, (1-v)/2, 0)``, and ``(0, 0, 1/2)`` when missing, so that
  two present values are ``|Δv|`` apart and missing vs present is exactly 1 apart;
* a category becomes a one-hot vector times 1/2 (one mismatch = 1); missing is a level
  of its own and levels unseen when fitting share one "other" slot;
* everything is divided by ``n``.

Clamping to the reference range replaces SDMetrics' cap of ``|Δ|/range`` at 1: the two
agree whenever the values lie inside the reference range (synthesizers here clip to the
observed range), and a value outside it counts as if it were at the boundary.

:func:`nearest` finds the exact-DCR nearest rows in two steps, both vectorized with
torch: the ``n_candidates`` nearest by (weighted) Euclidean distance, one chunked
matrix product per block of queries, then the exact L1 distance to those candidates,
which is re-ranked. The Euclidean proxy weights every column so that a category
mismatch or a full-range numeric difference counts 1; when the reference has no more
rows than ``n_candidates`` the search is exact, and otherwise an L1-nearest row that is
not among the L2 candidates is missed (the reported DCR is then an upper bound).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from synthgen.data.schema import TableSchema, coerce_column
from synthgen.validation.fidelity import NUMERIC_KINDS, to_numeric

MISSING_KEY = "\x00<missing>"  # the key of a missing category value
_BLOCK = 1 << 23  # query-by-reference entries per matrix-product block (32 MiB of float32)


def modelled_columns(schema: TableSchema, exclude: Iterable[str] = ()) -> list[str]:
    """Names of the schema's modelled columns (not id/constant), minus ``exclude``."""
    skip = set(exclude)
    return [c.name for c in schema.columns if c.modelled and c.name not in skip]


def discrete_keys(values: pd.Series) -> np.ndarray:
    """Comparable keys of a category column: equal values get equal keys across tables.

    Numbers (also numeric text such as ``"2007"``) become the text of their float value,
    so ``3``, ``3.0`` and ``"3"`` agree; booleans and other values become their text;
    missing values become :data:`MISSING_KEY`.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    codes, uniques = pd.factorize(values)  # keys are made for the few distinct values only
    uniques = pd.Series(np.asarray(uniques, dtype=object))
    keys = uniques.astype(str)
    if not pd.api.types.is_bool_dtype(values) and not uniques.map(lambda v: isinstance(v, (bool, np.bool_))).any():
        numbers = pd.to_numeric(uniques, errors="coerce")
        if numbers.notna().all():
            keys = numbers.astype(float).astype(str)
    table = np.append(keys.to_numpy(dtype=object), MISSING_KEY)
    return table[codes]  # code -1 (missing) picks the last entry


def normalized(frame: pd.DataFrame, schema: TableSchema, columns: Sequence[str]) -> pd.DataFrame:
    """``columns`` with numbers/dates as float64 (dates in epoch seconds) and categories
    as :func:`discrete_keys`; two rows are identical exactly when their normalized rows are."""
    out = {}
    for name in columns:
        spec = schema[name]
        values = coerce_column(frame[name], spec)
        out[name] = to_numeric(values) if spec.kind in NUMERIC_KINDS else discrete_keys(values)
    return pd.DataFrame(out, index=frame.index)


@dataclass
class MixedEncoder:
    """Encoding of mixed tables whose L1 distance is SDMetrics' DCR (module docstring).

    Build it with :meth:`fit`; :meth:`transform` gives the distance space and
    :meth:`features` a model-ready matrix.
    """

    schema: TableSchema
    numeric: list[str]
    discrete: list[str]
    lo: np.ndarray  # per numeric column: reference minimum
    span: np.ndarray  # per numeric column: reference range (0 read as 1)
    with_missing: np.ndarray  # per numeric column: has missing values (three coordinates)
    levels: list[pd.Index]  # per discrete column: known keys; index len(levels) = "other"

    @classmethod
    def fit(
        cls,
        reference: pd.DataFrame,
        schema: TableSchema,
        columns: Sequence[str] | None = None,
        others: Iterable[pd.DataFrame] = (),
    ) -> MixedEncoder:
        """Fit ranges on ``reference`` and category levels/missingness on all tables.

        Args:
            reference: the table whose ranges scale numbers (the real train split).
            schema: the table schema (column kinds).
            columns: columns to encode; default every modelled column of the schema.
            others: further tables that will be encoded (synthetic, holdout): their
                levels and missing values join the layout so that every table shares it.
        """
        columns = list(modelled_columns(schema) if columns is None else columns)
        numeric = [c for c in columns if schema[c].kind in NUMERIC_KINDS]
        discrete = [c for c in columns if c not in numeric]
        frames = [normalized(reference, schema, columns)]
        frames += [normalized(f, schema, columns) for f in others]
        ref = frames[0]
        lo, span, with_missing = [], [], []
        for c in numeric:
            x = ref[c].to_numpy()
            present = x[~np.isnan(x)]
            low, high = (float(present.min()), float(present.max())) if len(present) else (0.0, 1.0)
            lo.append(low)
            span.append(high - low if high > low else 1.0)
            with_missing.append(any(f[c].isna().any() for f in frames))
        levels = [pd.Index(pd.unique(np.concatenate([f[c].to_numpy() for f in frames]))) for c in discrete]
        return cls(schema, numeric, discrete, np.array(lo), np.array(span), np.array(with_missing, bool), levels)

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.discrete]

    def scaled(self, frame: pd.DataFrame) -> np.ndarray:
        """(rows, numeric columns) float64: ``(x - min) / range``, unclamped, NaN kept."""
        norm = normalized(frame, self.schema, self.numeric)
        return (norm.to_numpy(dtype=float).reshape(len(frame), len(self.numeric)) - self.lo) / self.span

    def codes(self, frame: pd.DataFrame) -> np.ndarray:
        """(rows, discrete columns) int64 level codes; unseen levels get ``len(levels)``."""
        norm = normalized(frame, self.schema, self.discrete)
        out = np.empty((len(frame), len(self.discrete)), dtype=np.int64)
        for j, (c, lev) in enumerate(zip(self.discrete, self.levels)):
            code = lev.get_indexer(norm[c].to_numpy())
            out[:, j] = np.where(code < 0, len(lev), code)
        return out

    def _one_hot(self, codes: np.ndarray, value: float) -> np.ndarray:
        widths = [len(lev) + 1 for lev in self.levels]
        offsets = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
        out = np.zeros((len(codes), sum(widths)), dtype=np.float32)
        if len(codes) and widths:
            out[np.arange(len(codes))[:, None], codes + offsets] = value
        return out

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """The distance space: float32 rows whose L1 distance is SDMetrics' DCR."""
        v = np.clip(self.scaled(frame), 0.0, 1.0)
        missing = np.isnan(v)
        parts = [np.where(missing[:, ~self.with_missing], 0.5, v[:, ~self.with_missing])]
        if self.with_missing.any():
            w, m = v[:, self.with_missing], missing[:, self.with_missing]
            w = np.where(m, 0.0, w)
            parts += [np.where(m, 0.0, w / 2), np.where(m, 0.0, (1 - w) / 2), m * 0.5]
        parts.append(self._one_hot(self.codes(frame), 0.5))
        x = np.hstack([p.astype(np.float32) for p in parts])
        return x / max(len(self.columns), 1)

    def l2_weights(self) -> np.ndarray:
        """Per-coordinate factors of the Euclidean search proxy: a category mismatch and a
        full-range difference both count 1 (plain numbers 1, the rest sqrt 2)."""
        n_plain = int((~self.with_missing).sum())
        n_rest = 3 * int(self.with_missing.sum()) + sum(len(lev) + 1 for lev in self.levels)
        return np.concatenate([np.ones(n_plain), np.full(n_rest, np.sqrt(2.0))]).astype(np.float32)

    def features(self, frame: pd.DataFrame) -> np.ndarray:
        """A model-ready float32 matrix: scaled numbers (unclamped; missing as 0 with an
        indicator column) and one-hot categories."""
        v = self.scaled(frame)
        missing = np.isnan(v)
        parts = [np.where(missing, 0.0, v), missing[:, self.with_missing].astype(float)]
        parts.append(self._one_hot(self.codes(frame), 1.0))
        return np.hstack([p.astype(np.float32) for p in parts])


def nearest(
    query: np.ndarray,
    reference: np.ndarray,
    k: int = 1,
    *,
    weights: np.ndarray | None = None,
    n_candidates: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest reference rows of each query row by L1 distance.

    Candidates are the ``max(k, n_candidates)`` nearest by Euclidean distance on
    ``x * weights`` (chunked ``addmm`` + ``topk``), re-ranked by exact L1 distance.

    Args:
        query: (n, d) float32 rows (e.g. :meth:`MixedEncoder.transform`).
        reference: (m, d) float32 rows.
        k: neighbours per query; default 1 (clipped to m).
        weights: per-coordinate factors of the Euclidean proxy; default all 1
            (:meth:`MixedEncoder.l2_weights` for the DCR space).
        n_candidates: Euclidean candidates re-ranked per query; default 16.

    Returns:
        ``(distances, indices)``, both (n, k), nearest first; distances are L1 (float64).
    """
    import torch

    n, m = len(query), len(reference)
    k = min(k, m)
    if n == 0 or k == 0:
        return np.zeros((n, k)), np.zeros((n, k), dtype=np.int64)
    q = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32))
    r = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32))
    w = torch.ones(q.shape[1]) if weights is None else torch.from_numpy(np.asarray(weights, np.float32))
    rw_t = (r * w).T.contiguous()
    r_sq = (rw_t * rw_t).sum(0, keepdim=True)
    c = min(max(k, n_candidates), m)
    step = max(1, min(n, _BLOCK // m))
    dist = np.empty((n, k))
    idx = np.empty((n, k), dtype=np.int64)
    with torch.no_grad():
        for s in range(0, n, step):
            qb = q[s : s + step]
            if c == m:
                cand = torch.arange(m).expand(len(qb), m)
            else:  # |q|^2 is constant per row: ranking by |r|^2 - 2 q.r is enough
                cand = torch.addmm(r_sq, qb * w, rw_t, alpha=-2).topk(c, dim=1, largest=False, sorted=False).indices
            l1 = (r[cand] - qb[:, None, :]).abs().sum(-1)
            val, order = l1.topk(k, dim=1, largest=False, sorted=True)
            dist[s : s + step] = val.double().numpy()
            idx[s : s + step] = cand.gather(1, order).numpy()
    return dist, idx
