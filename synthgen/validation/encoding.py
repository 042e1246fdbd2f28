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

Level cap (``max_categories``, the ``data.max_categories`` of training): a column with
at least that many levels keeps the ``max_categories - 1`` most frequent levels of the
reference table, the rule training uses
(:func:`~synthgen.transformers.values.kept_levels`); the rarer ones and those seen only
in the other tables share the "other" slot, so no column is wider than
``max_categories`` whatever its levels. For distances that stays exact:
:meth:`MixedEncoder.encode` adds each pooled value's own code (:class:`Encoded`), and
:func:`nearest` counts two different pooled values as a mismatch, both in the Euclidean
proxy and in the exact re-ranking, so it finds the neighbours the uncapped encoding finds.

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

Memory: queries go in blocks whose temporaries (a block's proxy distances to every
reference row and its candidates' coordinates, both sized by the encoded width) stay
within :data:`NN_BLOCK_BYTES`; the reference is used in place (no weighted copy). A
reference too large to hold encoded is searched a block at a time
(:meth:`MixedEncoder.encode_blocks`, :func:`nearest_in_blocks`: each block's nearest,
merged; a block's candidates are its own best, so the result is at least as close as one
search over the whole reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from synthgen.config import DataConfig
from synthgen.data.schema import TableSchema, coerce_column
from synthgen.transformers.values import kept_levels
from synthgen.validation.fidelity import NUMERIC_KINDS, to_numeric

MISSING_KEY = "\x00<missing>"  # the key of a missing category value
MAX_CATEGORIES: int = DataConfig.model_fields["max_categories"].default  # data.max_categories' default (500)
NN_BLOCK_BYTES = 256 * 2**20  # memory budget of one query block's temporaries in nearest()


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
class Encoded:
    """Rows in the distance space of a :class:`MixedEncoder` (:meth:`MixedEncoder.encode`).

    Attributes:
        x: (n, d) float32 coordinates (:meth:`MixedEncoder.transform`).
        pooled: (n, k) int32: for each of the k capped columns, the value's own code where
            the value sits in the pooled "other" slot and -1 elsewhere; ``None`` when no
            column is capped.
        unit: the distance one category mismatch adds (1 / number of columns).
        slots: the k coordinates of ``x`` that are the capped columns' "other" slots.
    """

    x: np.ndarray
    pooled: np.ndarray | None = None
    unit: float = 0.0
    slots: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.x)

    def take(self, rows: np.ndarray) -> Encoded:
        """The rows at ``rows`` (positions)."""
        return Encoded(self.x[rows], None if self.pooled is None else self.pooled[rows], self.unit, self.slots)


@dataclass
class MixedEncoder:
    """Encoding of mixed tables whose L1 distance is SDMetrics' DCR (module docstring).

    Build it with :meth:`fit`; :meth:`transform` gives the distance space (with
    :meth:`encode`, exact under a level cap) and :meth:`features` a model-ready matrix.
    """

    schema: TableSchema
    numeric: list[str]
    discrete: list[str]
    lo: np.ndarray  # per numeric column: reference minimum
    span: np.ndarray  # per numeric column: reference range (0 read as 1)
    with_missing: np.ndarray  # per numeric column: has missing values (three coordinates)
    levels: list[pd.Index]  # per discrete column: known (kept) keys; index len(levels) = "other"
    keys: list[pd.Index | None] | None = None  # per discrete column: every key, where the cap pooled some

    @classmethod
    def fit(
        cls,
        reference: pd.DataFrame,
        schema: TableSchema,
        columns: Sequence[str] | None = None,
        others: Iterable[pd.DataFrame] = (),
        max_categories: int | None = MAX_CATEGORIES,
    ) -> MixedEncoder:
        """Fit ranges on ``reference`` and category levels/missingness on all tables.

        Args:
            reference: the table whose ranges scale numbers (the real train split).
            schema: the table schema (column kinds).
            columns: columns to encode; default every modelled column of the schema.
            others: further tables that will be encoded (synthetic, holdout): their
                levels and missing values join the layout so that every table shares it.
            max_categories: the level cap (``data.max_categories``; module docstring):
                a column with at least this many levels keeps the ``max_categories - 1``
                most frequent in ``reference``. Default :data:`MAX_CATEGORIES` (the
                default of ``data.max_categories``); ``None`` keeps every level (for
                encoders whose :meth:`codes` must tell every level apart).
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
        levels: list[pd.Index] = []
        keys: list[pd.Index | None] = []
        for c in discrete:
            every = pd.Index(pd.unique(np.concatenate([f[c].to_numpy() for f in frames])))
            if max_categories is not None and len(every) >= max_categories:
                levels.append(pd.Index(kept_levels(ref[c].value_counts(), max_categories)))
                keys.append(every)
            else:
                levels.append(every)
                keys.append(None)
        capped = keys if any(k is not None for k in keys) else None
        return cls(schema, numeric, discrete, np.array(lo), np.array(span), np.array(with_missing, bool), levels,
                   capped)

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.discrete]

    def scaled(self, frame: pd.DataFrame) -> np.ndarray:
        """(rows, numeric columns) float64: ``(x - min) / range``, unclamped, NaN kept."""
        norm = normalized(frame, self.schema, self.numeric)
        return (norm.to_numpy(dtype=float).reshape(len(frame), len(self.numeric)) - self.lo) / self.span

    def codes(self, frame: pd.DataFrame) -> np.ndarray:
        """(rows, discrete columns) int64 level codes; unseen (and pooled) levels get ``len(levels)``."""
        return self._codes(normalized(frame, self.schema, self.discrete))

    def _codes(self, norm: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(norm), len(self.discrete)), dtype=np.int64)
        for j, (c, lev) in enumerate(zip(self.discrete, self.levels)):
            code = lev.get_indexer(norm[c].to_numpy())
            out[:, j] = np.where(code < 0, len(lev), code)
        return out

    @property
    def capped(self) -> bool:
        """Whether the level cap pooled levels of some column."""
        return self.keys is not None

    def pooled_codes(self, frame: pd.DataFrame) -> np.ndarray | None:
        """(rows, capped columns) int32: a pooled value's own code (among every key seen
        when fitting; unseen ones share one) and -1 for kept levels; ``None`` when no
        column is capped."""
        if self.keys is None:
            return None
        capped = [(c, lev, every) for c, lev, every in zip(self.discrete, self.levels, self.keys) if every is not None]
        norm = normalized(frame, self.schema, [c for c, _, _ in capped])
        out = np.full((len(frame), len(capped)), -1, dtype=np.int32)
        for j, (c, lev, every) in enumerate(capped):
            key = norm[c].to_numpy()
            pooled = lev.get_indexer(key) < 0
            code = every.get_indexer(key[pooled])
            out[pooled, j] = np.where(code < 0, len(every), code)
        return out

    def other_slots(self) -> np.ndarray:
        """The coordinates of :meth:`transform` that hold the capped columns' "other" slots."""
        start = self.width - sum(len(lev) + 1 for lev in self.levels)
        ends = start + np.cumsum([len(lev) + 1 for lev in self.levels]) - 1
        return np.array([e for e, k in zip(ends, self.keys or []) if k is not None], dtype=np.int64)

    def _one_hot_into(self, out: np.ndarray, start: int, codes: np.ndarray, value: float) -> None:
        widths = [len(lev) + 1 for lev in self.levels]
        offsets = start + np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
        if len(codes) and widths:
            out[np.arange(len(codes))[:, None], codes + offsets] = value

    @property
    def width(self) -> int:
        """Coordinates per row of :meth:`transform`."""
        n_plain = int((~self.with_missing).sum())
        return n_plain + 3 * int(self.with_missing.sum()) + sum(len(lev) + 1 for lev in self.levels)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """The distance space: float32 rows whose L1 distance is SDMetrics' DCR (two pooled
        values of a capped column count as equal here; :meth:`encode` tells them apart)."""
        v = np.clip(self.scaled(frame), 0.0, 1.0)
        missing = np.isnan(v)
        out = np.zeros((len(frame), self.width), dtype=np.float32)  # filled in place: one table-sized array
        plain = ~self.with_missing
        pos = int(plain.sum())
        out[:, :pos] = np.where(missing[:, plain], 0.5, v[:, plain])
        if self.with_missing.any():
            w, m = v[:, self.with_missing], missing[:, self.with_missing]
            w = np.where(m, 0.0, w)
            k = w.shape[1]
            out[:, pos : pos + k] = np.where(m, 0.0, w / 2)
            out[:, pos + k : pos + 2 * k] = np.where(m, 0.0, (1 - w) / 2)
            out[:, pos + 2 * k : pos + 3 * k] = m * 0.5
            pos += 3 * k
        self._one_hot_into(out, pos, self.codes(frame), 0.5)
        out /= max(len(self.columns), 1)
        return out

    def encode(self, frame: pd.DataFrame) -> Encoded:
        """:meth:`transform` plus the pooled codes that keep distances exact under the cap."""
        return Encoded(self.transform(frame), self.pooled_codes(frame), 1.0 / max(len(self.columns), 1),
                       self.other_slots() if self.capped else None)

    def encode_blocks(self, frame: pd.DataFrame, block_bytes: int | None = None) -> Iterator[Encoded]:
        """:meth:`encode` of ``frame`` a block of rows at a time, each block's coordinates
        within ``block_bytes`` (default :data:`NN_BLOCK_BYTES`)."""
        rows = max(1, (block_bytes or NN_BLOCK_BYTES) // (4 * max(self.width, 1)))
        for start in range(0, len(frame), rows):
            yield self.encode(frame.iloc[start : start + rows])

    def l2_weights(self) -> np.ndarray:
        """Per-coordinate factors of the Euclidean search proxy: a category mismatch and a
        full-range difference both count 1 (plain numbers 1, the rest sqrt 2)."""
        n_plain = int((~self.with_missing).sum())
        n_rest = 3 * int(self.with_missing.sum()) + sum(len(lev) + 1 for lev in self.levels)
        return np.concatenate([np.ones(n_plain), np.full(n_rest, np.sqrt(2.0))]).astype(np.float32)

    def features(self, frame: pd.DataFrame) -> np.ndarray:
        """A model-ready float32 matrix: scaled numbers (unclamped; missing as 0 with an
        indicator column) and one-hot categories (capped levels: one "other" column)."""
        v = self.scaled(frame)
        missing = np.isnan(v)
        n_num, n_flag = v.shape[1], int(self.with_missing.sum())
        out = np.zeros((len(frame), n_num + n_flag + sum(len(lev) + 1 for lev in self.levels)), dtype=np.float32)
        out[:, :n_num] = np.where(missing, 0.0, v)
        out[:, n_num : n_num + n_flag] = missing[:, self.with_missing]
        self._one_hot_into(out, n_num + n_flag, self.codes(frame), 1.0)
        return out


def nearest(
    query: np.ndarray | Encoded,
    reference: np.ndarray | Encoded,
    k: int = 1,
    *,
    weights: np.ndarray | None = None,
    n_candidates: int = 16,
    block_bytes: int = NN_BLOCK_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest reference rows of each query row by L1 distance.

    Candidates are the ``max(k, n_candidates)`` nearest by Euclidean distance on
    ``x * weights`` (chunked ``addmm`` + ``topk``), re-ranked by exact L1 distance (plus,
    for :class:`Encoded` rows of a capped encoder, ``unit`` per capped column where both
    values are pooled and differ; the proxy counts that mismatch too).

    Args:
        query: (n, d) float32 rows (e.g. :meth:`MixedEncoder.transform`) or :class:`Encoded`.
        reference: (m, d) float32 rows or :class:`Encoded`.
        k: neighbours per query; default 1 (clipped to m).
        weights: per-coordinate factors of the Euclidean proxy; default all 1
            (:meth:`MixedEncoder.l2_weights` for the DCR space).
        n_candidates: Euclidean candidates re-ranked per query; default 16.
        block_bytes: memory budget of one query block's temporaries (proxy distances to
            every reference row, the candidates' coordinates); default
            :data:`NN_BLOCK_BYTES` (256 MiB). The block's row count follows from the
            reference size and the encoded width.

    Returns:
        ``(distances, indices)``, both (n, k), nearest first; distances are L1 (float64).
    """
    import torch

    q_pool = query.pooled if isinstance(query, Encoded) else None
    r_pool = reference.pooled if isinstance(reference, Encoded) else None
    unit = reference.unit if isinstance(reference, Encoded) else 0.0
    slots = reference.slots if isinstance(reference, Encoded) else None
    query = query.x if isinstance(query, Encoded) else query
    reference = reference.x if isinstance(reference, Encoded) else reference
    exact_pool = q_pool is not None and r_pool is not None
    n, m = len(query), len(reference)
    k = min(k, m)
    if n == 0 or k == 0:
        return np.zeros((n, k)), np.zeros((n, k), dtype=np.int64)
    q = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32))
    r = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32))
    d = q.shape[1]
    w = torch.ones(d) if weights is None else torch.from_numpy(np.asarray(weights, np.float32))
    w2 = w * w
    c = min(max(k, n_candidates), m)
    # bytes per query row: candidates' coordinates (3 float32 temporaries), pooled codes, proxy distances
    per_row = 4 * c * 3 * (d + (q_pool.shape[1] if exact_pool else 0)) + (8 * m * (1 + exact_pool) if c < m else 0) + 64
    step = max(1, min(n, block_bytes // per_row))
    if c < m:  # |r w|^2, a block of reference rows at a time (no weighted copy of the reference)
        r_step = max(1, block_bytes // (8 * d + 8))
        r_sq = torch.cat([(blk * blk * w2).sum(1) for blk in r.split(r_step)]).unsqueeze(0)
    if exact_pool:  # a mismatch of two pooled values in the proxy: two one-hot slots of 1/2 unit, weighted
        qp, rp = torch.from_numpy(np.ascontiguousarray(q_pool)), torch.from_numpy(np.ascontiguousarray(r_pool))
        penalty = (2 * (0.5 * unit * w[torch.from_numpy(slots)]) ** 2).tolist()
    dist = np.empty((n, k))
    idx = np.empty((n, k), dtype=np.int64)
    with torch.no_grad():
        for s in range(0, n, step):
            qb = q[s : s + step]
            if c == m:
                cand = torch.arange(m).expand(len(qb), m)
            else:  # |q w|^2 is constant per row: ranking by |r w|^2 - 2 (q w^2).r is enough
                score = torch.addmm(r_sq, qb * w2, r.T, alpha=-2)
                for j in range(rp.shape[1] if exact_pool else 0):
                    a, b = qp[s : s + step, j, None], rp[None, :, j]
                    score += ((a != b) & (a >= 0) & (b >= 0)) * penalty[j]
                cand = score.topk(c, dim=1, largest=False, sorted=False).indices
            l1 = (r[cand] - qb[:, None, :]).abs().sum(-1)
            if exact_pool:  # two different pooled values of a capped column: one more mismatch
                a, b = rp[cand], qp[s : s + step, None, :]
                l1 += ((a != b) & (a >= 0) & (b >= 0)).sum(-1).to(l1.dtype) * unit
            val, order = l1.topk(k, dim=1, largest=False, sorted=True)
            dist[s : s + step] = val.double().numpy()
            idx[s : s + step] = cand.gather(1, order).numpy()
    return dist, idx


def nearest_in_blocks(
    query: np.ndarray | Encoded,
    blocks: Iterable[np.ndarray | Encoded],
    k: int = 1,
    *,
    weights: np.ndarray | None = None,
    n_candidates: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest` against a reference given as consecutive blocks of rows (e.g.
    :meth:`MixedEncoder.encode_blocks`): each block's ``k`` nearest, merged; indices count
    rows over all blocks. One block gives exactly :func:`nearest`'s answer.

    Returns:
        ``(distances, indices)``, both (n, k') with k' = min(k, reference rows).
    """
    best_d = best_i = None
    offset = 0
    for block in blocks:
        d, i = nearest(query, block, k, weights=weights, n_candidates=n_candidates)
        i = i + offset
        offset += len(block)
        if best_d is None:
            best_d, best_i = d, i
            continue
        d, i = np.hstack([best_d, d]), np.hstack([best_i, i])
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        best_d, best_i = np.take_along_axis(d, order, 1), np.take_along_axis(i, order, 1)
    if best_d is None:
        n = len(query)
        return np.zeros((n, 0)), np.zeros((n, 0), dtype=np.int64)
    return best_d, best_i
