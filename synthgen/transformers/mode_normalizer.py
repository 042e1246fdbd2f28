"""Mode-specific normalization: the fitted transformer between prepared frames and
the wide float matrix that ``tabular_gan``'s networks read and write.

Continuous columns get a Gaussian mixture (at most ``max_modes`` components). A value
``x`` becomes ``alpha = (x - mu_k) / (4 sigma_k)`` clipped to ``[-0.99, 0.99]`` plus a
one-hot of its mode ``k``, the mode drawn from the posterior as in CTGAN. Discrete
columns are one-hot. Unlike CTGAN's transformer this one is vectorized end to end:

* the mixtures of *all* continuous columns are fitted together by one batched EM in
  numpy (``(rows, columns, modes)`` arrays, a row subsample of ``fit_rows``), with
  components whose weight falls below ``weight_threshold`` pruned, instead of one
  scikit-learn Bayesian mixture per column;
* modes are drawn for all rows at once (cumulative posterior vs one uniform per cell);
* the table is never stored as a dense one-hot: :meth:`ModeNormalizer.transform`
  returns an :class:`EncodedTable` of per-row ``alpha`` values and the *positions* of
  the hot entries, and the dense matrix is built per batch
  (:meth:`EncodedTable.dense`), so a 10,000-level categorical costs one int per row.

Layout of the wide matrix (published as :attr:`ModeNormalizer.spans`)::

    [ alpha_1 .. alpha_C | modes of col 1 | .. | modes of col C | levels of disc 1 | .. ]

``alpha`` entries take ``tanh``; every other span takes a softmax. The discrete block
doubles as the conditional vector (its offset is :attr:`ModeNormalizer.disc_start`).

*Point masses* (``fit(point_masses=...)``, learned at ingest:
:mod:`synthgen.data.structure`) are extra modes at the end of their column's mode span:
a value equal to a point mass takes that mode with ``alpha = 0``, and the mode decodes to
the exact value. The generator chooses an exact 0 the way it chooses a mixture
component, without widening the conditional vector.

With ``public_modes=True`` (used under differential privacy) nothing is fitted from
the values: modes are ``max_modes`` evenly spaced Gaussians over the public range of
each column (the schema's min/max) and each value takes its nearest mode, a per-row
function that costs no privacy budget.

A fitted normalizer is saved as JSON (:meth:`ModeNormalizer.to_dict` /
:meth:`ModeNormalizer.from_dict`; no pickle).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

_CLIP = 0.99  # |alpha| bound, as in CTGAN
_MIN_STD = 1e-3  # component std floor, as a fraction of the column's std


@dataclass(frozen=True)
class Span:
    """One block of the wide matrix.

    Attributes:
        column: prepared column the block belongs to.
        kind: ``"alpha"`` (one value, tanh), ``"mode"`` or ``"level"`` (softmax).
        start: first index in the wide matrix.
        size: number of entries.
    """

    column: str
    kind: str
    start: int
    size: int

    @property
    def activation(self) -> str:
        return "tanh" if self.kind == "alpha" else "softmax"


@dataclass
class EncodedTable:
    """Compact encoding of a prepared frame.

    Attributes:
        alpha: ``(rows, C)`` float32 normalized values of the continuous columns.
        hot: ``(rows, C + D)`` int64 wide-matrix positions of the hot entries: the
            chosen mode of each continuous column, then the level of each discrete one.
        width: width of the wide matrix.
    """

    alpha: np.ndarray
    hot: np.ndarray
    width: int

    def __len__(self) -> int:
        return len(self.hot)

    def dense(self, rows: Any = slice(None)) -> np.ndarray:
        """The wide float32 matrix of ``rows`` (all by default)."""
        alpha, hot = self.alpha[rows], self.hot[rows]
        out = np.zeros((len(hot), self.width), dtype=np.float32)
        out[:, : alpha.shape[1]] = alpha
        np.put_along_axis(out, hot, 1.0, axis=1)
        return out


class ModeNormalizer:
    """Fitted prepared frame <-> wide matrix transformer.

    Args:
        max_modes: mixture components per continuous column. Default 10.
        weight_threshold: components lighter than this are pruned. Default 0.005.
        sparsity: each M-step takes this share of the rows off every component's
            count (a sparse-Dirichlet MAP update), so redundant components die out
            as in CTGAN's Bayesian mixture. Default 0.015.
        fit_rows: rows subsampled for the mixture fit. Default 20,000.
        n_iter: EM iterations at most. Default 100.
        public_modes: fit nothing from the values; evenly spaced modes over
            ``bounds`` (see module docstring). Default False.
        bounds: ``{column: (low, high)}`` public ranges, required with
            ``public_modes``; also used to clip ``inverse_transform`` output.
        seed: seed of the fit subsample. Default 0.
    """

    def __init__(
        self,
        max_modes: int = 10,
        weight_threshold: float = 0.005,
        sparsity: float = 0.015,
        fit_rows: int = 20_000,
        n_iter: int = 100,
        public_modes: bool = False,
        bounds: dict[str, tuple[float, float]] | None = None,
        seed: int = 0,
    ):
        self.max_modes = max_modes
        self.weight_threshold = weight_threshold
        self.sparsity = sparsity
        self.fit_rows = fit_rows
        self.n_iter = n_iter
        self.public_modes = public_modes
        self.bounds = bounds
        self.seed = seed

    # -- fitting -------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame, discrete_columns: list[str],
            levels: dict[str, list[str]] | None = None,
            point_masses: dict[str, list[float]] | None = None) -> ModeNormalizer:
        """Learn modes and level sets. Returns ``self``.

        ``levels``: a discrete column's full level set (public, under differential
        privacy), kept even where a level does not occur in ``frame``; default ``None``
        (the levels seen in ``frame``). ``point_masses``: ``{continuous column: values}``
        that get a mode of their own each (module docstring); default none."""
        self.discrete_columns_ = [c for c in frame.columns if c in set(discrete_columns)]
        self.continuous_columns_ = [c for c in frame.columns if c not in set(discrete_columns)]
        self.columns_ = list(frame.columns)
        self.point_masses_ = {c: [float(v) for v in vs] for c, vs in (point_masses or {}).items()
                              if c in self.continuous_columns_ and vs}
        given = levels or {}
        self.levels_ = {c: sorted(set(pd.unique(frame[c].astype(str))) | set(given.get(c, ())))
                        for c in self.discrete_columns_}
        if self.public_modes:
            self._fit_public()  # nothing from the values (differential privacy)
        else:
            self._fit_em(self._without_masses(frame[self.continuous_columns_].to_numpy(dtype=np.float64)))
        self._build_layout()
        return self

    def _without_masses(self, values: np.ndarray) -> np.ndarray:
        """The values the mixtures are fitted on: point-mass cells replaced by (seeded)
        draws from their column's other values, so no mixture component is spent on a
        spike that has a mode of its own."""
        rng = np.random.default_rng(self.seed)
        values = values.copy()
        for i, col in enumerate(self.continuous_columns_):
            hit = np.isin(values[:, i], self.point_masses_.get(col, []))
            if hit.any() and (~hit).any():
                values[hit, i] = rng.choice(values[~hit, i], size=int(hit.sum()))
        return values

    def _fit_public(self) -> None:
        if self.bounds is None or any(c not in self.bounds for c in self.continuous_columns_):
            raise ValueError("public_modes needs public bounds for every continuous column")
        k = self.max_modes
        lo = np.array([self.bounds[c][0] for c in self.continuous_columns_], dtype=np.float64)
        hi = np.array([self.bounds[c][1] for c in self.continuous_columns_], dtype=np.float64)
        width = np.maximum(hi - lo, 1e-9)
        centers = (np.arange(k) + 0.5) / k
        self.means_ = lo[:, None] + width[:, None] * centers[None, :]
        self.stds_ = np.repeat((width / (2 * k))[:, None], k, axis=1)
        self.weights_ = np.full_like(self.means_, 1.0 / k)
        self.active_ = np.ones_like(self.means_, dtype=bool)

    def _fit_em(self, values: np.ndarray) -> None:
        n, c = values.shape
        k = self.max_modes
        rng = np.random.default_rng(self.seed)
        x = values if n <= self.fit_rows else values[rng.choice(n, self.fit_rows, replace=False)]
        loc = x.mean(axis=0)
        scale = x.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        z = (x - loc) / scale  # (m, C)
        quant = np.quantile(z, (np.arange(k) + 0.5) / k, axis=0).T  # (C, K)
        mu = quant.copy()
        var = np.full((c, k), (1.0 / k) ** 2)
        w = np.full((c, k), 1.0 / k)
        floor = _MIN_STD**2
        zz = z[:, :, None]
        prev = -np.inf
        for _ in range(self.n_iter):
            logp = self._log_joint(zz, mu, var, w)  # (m, C, K)
            mx = logp.max(axis=2, keepdims=True)
            post = np.exp(logp - mx)
            tot = post.sum(axis=2, keepdims=True)
            post /= tot
            ll = float((np.log(tot[..., 0]) + mx[..., 0]).mean())
            nk = post.sum(axis=0)  # (C, K)
            w = np.maximum(nk - self.sparsity * len(z), 0.0)
            w = w / w.sum(axis=1, keepdims=True)
            w = np.where(w < self.weight_threshold, 0.0, w)
            w /= w.sum(axis=1, keepdims=True)
            safe = np.maximum(nk, 1e-12)
            mu = np.where(w > 0, (post * zz).sum(axis=0) / safe, mu)
            var = np.where(w > 0, (post * (zz - mu[None]) ** 2).sum(axis=0) / safe, var)
            var = np.maximum(var, floor)
            if abs(ll - prev) < 1e-5:
                break
            prev = ll
        self.means_ = mu * scale[:, None] + loc[:, None]
        self.stds_ = np.sqrt(var) * scale[:, None]
        self.weights_ = w
        self.active_ = w > 0

    @staticmethod
    def _log_joint(zz: np.ndarray, mu: np.ndarray, var: np.ndarray, w: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            logw = np.log(w)
        return logw[None] - 0.5 * np.log(2 * np.pi * var)[None] - 0.5 * (zz - mu[None]) ** 2 / var[None]

    def _build_layout(self) -> None:
        # compact the active modes of each column to the front
        c = len(self.continuous_columns_)
        order = np.argsort(~self.active_, axis=1, kind="stable")
        self.means_ = np.take_along_axis(self.means_, order, 1)
        self.stds_ = np.take_along_axis(self.stds_, order, 1)
        self.weights_ = np.take_along_axis(self.weights_, order, 1)
        self.active_ = np.take_along_axis(self.active_, order, 1)
        self.n_modes_ = self.active_.sum(axis=1).astype(int)
        masses = getattr(self, "point_masses_", {})
        self.n_points_ = np.array([len(masses.get(col, [])) for col in self.continuous_columns_], dtype=int)
        spans: list[Span] = [Span(col, "alpha", i, 1) for i, col in enumerate(self.continuous_columns_)]
        pos = c
        for i, col in enumerate(self.continuous_columns_):
            size = int(self.n_modes_[i] + self.n_points_[i])
            spans.append(Span(col, "mode", pos, size))
            pos += size
        self.disc_start = pos
        for col in self.discrete_columns_:
            spans.append(Span(col, "level", pos, len(self.levels_[col])))
            pos += len(self.levels_[col])
        self.spans: list[Span] = spans
        self.width = pos
        self.mode_starts_ = np.array([s.start for s in spans if s.kind == "mode"], dtype=np.int64)
        self.level_starts_ = np.array([s.start for s in spans if s.kind == "level"], dtype=np.int64)
        self.lookup_ = {col: {lv: j for j, lv in enumerate(lv_list)} for col, lv_list in self.levels_.items()}

    # -- derived facts -------------------------------------------------------------
    @property
    def n_continuous(self) -> int:
        return len(self.continuous_columns_)

    @property
    def cond_width(self) -> int:
        """Width of the conditional vector (all discrete levels)."""
        return self.width - self.disc_start

    def softmax_segments(self) -> np.ndarray:
        """Segment id of every softmax entry (wide positions ``n_continuous..width``)."""
        sizes = [s.size for s in self.spans if s.kind != "alpha"]
        return np.repeat(np.arange(len(sizes)), sizes)

    def level_position(self, column: str, level: str) -> int:
        """Wide-matrix position of ``level`` of discrete ``column``."""
        span = next(s for s in self.spans if s.kind == "level" and s.column == column)
        return span.start + self.lookup_[column][level]

    # -- forward ---------------------------------------------------------------------
    def transform(self, frame: pd.DataFrame, rng: np.random.Generator | None = None, chunk: int = 65_536) -> EncodedTable:
        """Encode ``frame``; modes are drawn from the posterior with ``rng``."""
        rng = rng if rng is not None else np.random.default_rng(self.seed)
        n = len(frame)
        c = self.n_continuous
        alpha = np.zeros((n, c), dtype=np.float32)
        hot = np.zeros((n, c + len(self.discrete_columns_)), dtype=np.int64)
        if c:
            values = frame[self.continuous_columns_].to_numpy(dtype=np.float64)
            for lo in range(0, n, chunk):
                a, m = self._encode_continuous(values[lo : lo + chunk], rng)
                alpha[lo : lo + chunk] = a
                hot[lo : lo + chunk, :c] = m + self.mode_starts_[None, :]
        for j, col in enumerate(self.discrete_columns_):
            codes = pd.Categorical(frame[col].astype(str), categories=self.levels_[col]).codes
            if (codes < 0).any():
                bad = frame[col].astype(str)[codes < 0].iloc[0]
                raise ValueError(f"column {col!r}: level {bad!r} was not seen when fitting")
            hot[:, c + j] = codes + self.level_starts_[j]
        return EncodedTable(alpha, hot, self.width)

    def _encode_continuous(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        mu, sd = self.means_[None], self.stds_[None]
        xx = x[:, :, None]
        if self.public_modes:
            dist = np.where(self.active_[None], np.abs(xx - mu), np.inf)
            mode = dist.argmin(axis=2)
        else:
            var = sd**2
            logp = self._log_joint(xx, self.means_, var[0], self.weights_)
            logp = np.where(self.active_[None], logp, -np.inf)
            post = np.exp(logp - logp.max(axis=2, keepdims=True))
            cum = np.cumsum(post, axis=2)
            u = rng.random(x.shape) * cum[:, :, -1]
            mode = (cum < u[:, :, None]).sum(axis=2)
            mode = np.minimum(mode, self.n_modes_[None, :] - 1)
        m = np.take_along_axis(self.means_[None].repeat(len(x), 0), mode[:, :, None], 2)[..., 0]
        s = np.take_along_axis(self.stds_[None].repeat(len(x), 0), mode[:, :, None], 2)[..., 0]
        a = np.clip((x - m) / (4 * s), -_CLIP, _CLIP)
        for i, col in enumerate(self.continuous_columns_):
            for k, value in enumerate(getattr(self, "point_masses_", {}).get(col, [])):
                hit = x[:, i] == value
                mode[hit, i] = self.n_modes_[i] + k
                a[hit, i] = 0.0
        return a.astype(np.float32), mode.astype(np.int64)

    # -- backward ----------------------------------------------------------------------
    def decode_hot(self, alpha: np.ndarray, hot: np.ndarray) -> pd.DataFrame:
        """Compact form (``alpha`` values and hot positions, as in :class:`EncodedTable`)
        -> prepared frame."""
        c = self.n_continuous
        out: dict[str, Any] = {}
        for i, col in enumerate(self.continuous_columns_):
            out[col] = self.values_of(alpha, hot, i)
        for j, col in enumerate(self.discrete_columns_):
            levels = np.array(self.levels_[col], dtype=object)
            out[col] = levels[hot[:, c + j] - self.level_starts_[j]]
        return pd.DataFrame(out, columns=self.columns_)

    def values_of(self, alpha: np.ndarray, hot: np.ndarray, i: int) -> np.ndarray:
        """Continuous column ``i``'s values from compact rows: ``alpha`` scaled by the
        chosen mixture mode, or the exact value of a chosen point-mass mode."""
        mode = hot[:, i] - self.mode_starts_[i]
        inside = np.minimum(mode, self.n_modes_[i] - 1)
        values = np.clip(alpha[:, i], -1, 1).astype(np.float64) * 4 * self.stds_[i, inside] + self.means_[i, inside]
        masses = np.asarray(getattr(self, "point_masses_", {}).get(self.continuous_columns_[i], []), dtype=float)
        if len(masses):
            point = mode >= self.n_modes_[i]
            values[point] = masses[np.minimum(mode[point] - self.n_modes_[i], len(masses) - 1)]
        return values

    def inverse_transform(self, wide: np.ndarray) -> pd.DataFrame:
        """Wide matrix (any scores in softmax spans; argmax is taken) -> prepared frame."""
        wide = np.asarray(wide)
        c = self.n_continuous
        hot = np.zeros((len(wide), len(self.spans) - c), dtype=np.int64)
        for i, span in enumerate(self.spans[c:]):
            hot[:, i] = span.start + wide[:, span.start : span.start + span.size].argmax(axis=1)
        return self.decode_hot(wide[:, :c], hot)

    # -- persistence ------------------------------------------------------------------------
    _SETTINGS = ("max_modes", "weight_threshold", "sparsity", "fit_rows", "n_iter", "public_modes", "seed")

    def to_dict(self) -> dict[str, Any]:
        """The fitted normalizer as plain JSON values (no pickle): the constructor settings,
        the column roles, levels and point masses, and each continuous column's mixture (``means``,
        ``stds``, ``weights``, ``active``: ``(columns, max_modes)`` nested lists). The
        layout (spans, positions) is derived again on load."""
        settings = {name: getattr(self, name) for name in self._SETTINGS}
        bounds = None if self.bounds is None else {c: [float(lo), float(hi)] for c, (lo, hi) in self.bounds.items()}
        return {
            **{k: (v.item() if isinstance(v, np.generic) else v) for k, v in settings.items()},
            "bounds": bounds,
            "columns": list(self.columns_),
            "discrete_columns": list(self.discrete_columns_),
            "continuous_columns": list(self.continuous_columns_),
            "levels": {c: list(v) for c, v in self.levels_.items()},
            "point_masses": {c: list(v) for c, v in getattr(self, "point_masses_", {}).items()},
            "means": self.means_.tolist(),
            "stds": self.stds_.tolist(),
            "weights": self.weights_.tolist(),
            "active": self.active_.tolist(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> ModeNormalizer:
        """The normalizer described by :meth:`to_dict`; it encodes and decodes exactly as
        the one saved.

        Raises:
            KeyError, ValueError, TypeError: a missing key or arrays of the wrong shape.
        """
        bounds = state["bounds"]
        norm = cls(**{name: state[name] for name in cls._SETTINGS},
                   bounds=None if bounds is None else {c: (float(lo), float(hi)) for c, (lo, hi) in bounds.items()})
        norm.columns_ = list(state["columns"])
        norm.discrete_columns_ = list(state["discrete_columns"])
        norm.continuous_columns_ = list(state["continuous_columns"])
        norm.levels_ = {c: list(levels) for c, levels in state["levels"].items()}
        norm.point_masses_ = {c: [float(v) for v in vs] for c, vs in state.get("point_masses", {}).items()}
        if set(norm.point_masses_) - set(norm.continuous_columns_):
            raise ValueError("point masses name a column that is not continuous")
        if set(norm.levels_) != set(norm.discrete_columns_):
            raise ValueError("levels do not match the discrete columns")
        shape = (len(norm.continuous_columns_), int(norm.max_modes))
        norm.means_ = np.asarray(state["means"], dtype=np.float64).reshape(shape)
        norm.stds_ = np.asarray(state["stds"], dtype=np.float64).reshape(shape)
        norm.weights_ = np.asarray(state["weights"], dtype=np.float64).reshape(shape)
        norm.active_ = np.asarray(state["active"], dtype=bool).reshape(shape)
        norm._build_layout()  # the active modes are already in front: the order is kept
        return norm
