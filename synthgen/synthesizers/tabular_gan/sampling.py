"""Vectorized work over the wide matrix of ``tabular_gan``: activations and losses over
its spans (:class:`SpanOps`) and training-by-sampling of conditions and real rows
(:class:`CondSampler`), both on the device without a Python loop over rows or columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from synthgen.transformers.mode_normalizer import EncodedTable, ModeNormalizer


class SpanOps:
    """Activations and losses over the wide matrix's spans, without a loop over them."""

    def __init__(self, normalizer: ModeNormalizer, device: torch.device):
        self.c = normalizer.n_continuous
        self.width = normalizer.width
        self.disc_start = normalizer.disc_start
        seg = torch.as_tensor(normalizer.softmax_segments(), dtype=torch.int64, device=device)
        self.seg = seg
        self.n_seg = int(seg.max()) + 1 if len(seg) else 0
        self.spans = normalizer.spans

    def _seg_max(self, x: torch.Tensor) -> torch.Tensor:
        idx = self.seg.expand(x.shape[0], -1)
        m = torch.full((x.shape[0], self.n_seg), -torch.inf, device=x.device, dtype=x.dtype)
        return m.scatter_reduce(1, idx, x.detach(), "amax", include_self=True)

    def activate(self, raw: torch.Tensor, tau: float, gen: torch.Generator) -> torch.Tensor:
        """``tanh`` on alpha entries, Gumbel-softmax(tau) within every other span."""
        alpha = torch.tanh(raw[:, : self.c])
        logits = raw[:, self.c :]
        u = torch.rand(logits.shape, generator=gen, device=raw.device).clamp_(1e-10, 1 - 1e-7)
        y = (logits - torch.log(-torch.log(u))) / tau
        idx = self.seg.expand(raw.shape[0], -1)
        e = torch.exp(y - self._seg_max(y).gather(1, idx))
        s = torch.zeros(raw.shape[0], self.n_seg, device=raw.device, dtype=raw.dtype).scatter_add(1, idx, e)
        return torch.cat([alpha, e / s.gather(1, idx)], dim=1)

    def cond_cross_entropy(self, raw: torch.Tensor, target_pos: torch.Tensor) -> torch.Tensor:
        """Per-row cross-entropy of the generated span of the conditioned column
        against its conditioned level (``target_pos``: wide positions)."""
        logits = raw[:, self.c :]
        idx = self.seg.expand(raw.shape[0], -1)
        m = self._seg_max(logits)
        s = torch.zeros_like(m).scatter_add(1, idx, torch.exp(logits - m.gather(1, idx)))
        tgt = (target_pos - self.c).unsqueeze(1)
        seg_t = self.seg[tgt]
        lse = torch.log(s.gather(1, seg_t)) + m.gather(1, seg_t)
        return (lse - logits.gather(1, tgt)).squeeze(1)

    def hard_sample(self, raw: torch.Tensor, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Sampling-time decode: alpha values and one drawn position per softmax span
        (Gumbel-max, i.e. a categorical draw from the span's softmax)."""
        alpha = torch.tanh(raw[:, : self.c])
        logits = raw[:, self.c :]
        u = torch.rand(logits.shape, generator=gen, device=raw.device).clamp_(1e-10, 1 - 1e-7)
        y = logits - torch.log(-torch.log(u))
        hot = [
            span.start + y[:, span.start - self.c : span.start - self.c + span.size].argmax(dim=1)
            for span in self.spans[self.c :]
        ]
        hot_t = torch.stack(hot, dim=1) if hot else torch.zeros(len(raw), 0, dtype=torch.int64)
        return alpha.cpu().numpy(), hot_t.cpu().numpy()


# -- training-by-sampling -------------------------------------------------------------------------
class CondSampler:
    """Conditional vectors and matching real rows, drawn on the device.

    Args:
        encoded: the encoded table.
        normalizer: the fitted normalizer.
        device: where index arrays live.
        level_counts: counts of every discrete level in wide order (after ``disc_start``);
            defaults to the data's (under DP, pass the noisy released counts).
    """

    def __init__(self, encoded: EncodedTable, normalizer: ModeNormalizer, device: torch.device,
                 level_counts: np.ndarray | None = None):
        c = normalizer.n_continuous
        self.device = device
        self.disc_start = normalizer.disc_start
        self.c = c
        level_spans = [s for s in normalizer.spans if s.kind == "level"]
        self.n_disc = len(level_spans)
        codes = encoded.hot[:, c:] - normalizer.disc_start  # (n, D) global level ids
        n = len(codes)
        width = normalizer.cond_width
        true_counts = np.bincount(codes.ravel(), minlength=width) if self.n_disc else np.zeros(0)
        counts = true_counts if level_counts is None else np.clip(level_counts, 0.0, None)
        # rows grouped by level: for level g, rows_by_level[start[g] : start[g] + count[g]]
        order = np.argsort(codes.T.ravel(), kind="stable")  # column-major: col j's rows at j*n..
        self.rows_by_level = torch.as_tensor(order % max(n, 1), dtype=torch.int64, device=device)
        starts = np.concatenate([[0], np.cumsum(true_counts)[:-1]]) if self.n_disc else np.zeros(0)
        self.start = torch.as_tensor(starts, dtype=torch.int64, device=device)
        self.count = torch.as_tensor(true_counts, dtype=torch.int64, device=device)
        self.col_of_level = torch.as_tensor(
            np.repeat(np.arange(self.n_disc), [s.size for s in level_spans]), dtype=torch.int64, device=device
        )
        # per-column cumulative probabilities, offset by the column index, flattened:
        # level = searchsorted(cum, col + u)
        self.cum_log = self._flat_cum(np.log1p(counts), level_spans)
        self.cum_freq = self._flat_cum(counts, level_spans)
        self.codes = torch.as_tensor(codes, dtype=torch.int64, device=device)

    def _flat_cum(self, weights: np.ndarray, spans: list[Any]) -> torch.Tensor:
        out = np.zeros(len(weights), dtype=np.float64)
        pos = 0
        for j, span in enumerate(spans):
            w = weights[pos : pos + span.size].astype(np.float64)
            w = w + 1e-12 if w.sum() <= 0 else w
            cum = np.cumsum(w) / w.sum()
            cum[-1] = 1.0
            out[pos : pos + span.size] = j + cum
            pos += span.size
        return torch.as_tensor(out, dtype=torch.float64, device=self.device)

    def draw_levels(self, b: int, gen: torch.Generator, log_freq: bool = True) -> torch.Tensor:
        """``b`` global level ids: a column uniformly, a level by (log-)frequency."""
        col = torch.randint(self.n_disc, (b,), generator=gen, device=self.device)
        u = torch.rand(b, generator=gen, device=self.device, dtype=torch.float64)
        cum = self.cum_log if log_freq else self.cum_freq
        g = torch.searchsorted(cum, col.double() + u, right=False)
        return torch.minimum(g, self.col_of_level.new_tensor(len(cum) - 1))

    def rows_for(self, levels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One real row having each given level (uniformly among them)."""
        cnt = self.count[levels]
        off = (torch.rand(len(levels), generator=gen, device=self.device) * cnt).long()
        off = torch.minimum(off, (cnt - 1).clamp(min=0))
        return self.rows_by_level[self.start[levels] + off]

    def own_levels(self, rows: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """For each row, its level in a uniformly chosen discrete column."""
        col = torch.randint(self.n_disc, (len(rows),), generator=gen, device=self.device)
        return self.codes[rows, col]
