"""The generator of ``dp_marginals``: a torch network from latents to one categorical
distribution per attribute, fitted to noisy marginal measurements, and drawing codes from it.

The model's distribution is the uniform mixture, over ``model.batch_size`` fixed Gaussian
latents (its *anchors*, drawn from ``model.seed`` and saved with the weights), of the
product of the per-attribute distributions the network outputs at each (relaxed one-hot:
softmax outputs, as in GEM/RAP). Its marginal on attributes ``(a, b, ...)`` is the mean over
anchors of the outer product of their distributions: exact and differentiable, so the
network is fitted by full-batch gradient descent on the weighted least-squares loss of
Private-PGM's estimation step::

    sum over measured marginals i of  || (n * mu_i(theta) - y_i) / sigma_i ||^2

(``n``: the public row count; ``y_i``: the noisy counts; several measurements of the same
marginal are first combined by inverse-variance weighting). Fixed anchors rather than fresh
latents each step: the squared error of a sampled batch's marginal would add the sampling
variance, a penalty on every dependence between columns that grows with the precision of
the measurements, and noisy gradients need far more steps (measured on a 50k-row table).
The reported loss (the mean over the last tenth of a fit's steps) divides by the cells
measured: about 1 when the model sits within the noise of every measurement. Fitting reads
only the noisy measurements: post-processing, no privacy cost.

Randomness is explicit: the anchors and the parameters come from ``model.seed``; sampling
takes its own ``torch.Generator`` (an anchor uniformly, then a code per attribute).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from synthgen.training.device import adam


@contextlib.contextmanager
def one_cpu_thread(device: torch.device) -> Iterator[None]:
    """On CPU, run the block with one torch intra-op thread, restoring the count after. The
    generator's steps are small matrix products that gain nothing from more threads, and on
    a busy machine idle-spinning worker threads made a fit 30x slower (measured: 4 s with
    one thread, 123 s with two on a loaded 2-core box)."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


SHARE_FLOOR = 1e-3  # of a uniform share: added before the log in MarginalFitter.start_at

ADAM_BETA2 = 0.99
"""Adam's second-moment decay (torch's default: 0.999). Remembering 1,000 steps of squared
gradients, Adam keeps the updates of a level tiny long after its gradient has shrunk, so a
level the fit pushed to near-zero mass in every anchor (the softmax saturated) stays there;
0.99 forgets in about 100 steps. With the measured start alone, a level of 1.4% measured
almost exactly was still fitted at 0.1% in 1 of 8 short fits; with both, 0 of 12."""

HEAD_SCALE = 5.0
"""The output layer starts at 5x PyTorch's default init, so the anchors' distributions
differ from the start: a mixture of near-identical products needs many steps to break the
symmetry before it can express dependence between columns. On a 50k-row 10-column table at
epsilon 1 the synthetic carat-price correlation (real 0.93) was 0.14 at 1x, 0.64 at 5x,
0.27 at 8x and 0.12 at 20x, at equal steps."""


@dataclass
class Measurement:
    """One noisy marginal: ``attrs`` (attribute indices, in order), ``values`` (the noisy
    counts, flattened in C order over ``attrs``), ``sigma`` (the Gaussian noise's std)."""

    attrs: tuple[int, ...]
    values: np.ndarray
    sigma: float


def one_way_counts(measurements: list[Measurement], sizes: list[int]) -> dict[int, np.ndarray]:
    """Each attribute's counts in the first measurement that holds it (its one-way
    marginal, or summed out of a larger one), clipped at 0: post-processing of releases."""
    out: dict[int, np.ndarray] = {}
    for m in measurements:
        table = m.values.reshape(tuple(sizes[a] for a in m.attrs))
        for axis, a in enumerate(m.attrs):
            if a not in out:
                others = tuple(i for i in range(len(m.attrs)) if i != axis)
                out[a] = np.clip(table.sum(axis=others) if others else table, 0, None)
    return out


def init_linear(layer: nn.Linear, gen: torch.Generator) -> None:
    """PyTorch's default ``Linear`` init, drawn from ``gen`` instead of the global RNG."""
    bound = 1.0 / math.sqrt(layer.in_features)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=gen)
        layer.bias.uniform_(-bound, bound, generator=gen)


class MarginalNetwork(nn.Module):
    """An MLP (ReLU) from a ``latent_dim`` Gaussian latent to one softmax per attribute.

    Args:
        latent_dim: latent width (``model.embedding_dim``).
        hidden: hidden layer widths (``model.generator_dim``).
        sizes: codes per attribute.
        gen: the generator of the anchors and the initial parameters.
        anchors: the number of fixed latents the model is the uniform mixture over
            (``model.batch_size``). Default 1.
    """

    def __init__(self, latent_dim: int, hidden: list[int], sizes: list[int], gen: torch.Generator, anchors: int = 1):
        super().__init__()
        self.register_buffer("anchors", torch.randn(int(anchors), int(latent_dim), generator=gen))
        layers: list[nn.Module] = []
        width = latent_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, int(sum(sizes)))
        self.sizes = [int(s) for s in sizes]
        self.latent_dim = int(latent_dim)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                init_linear(m, gen)
        with torch.no_grad():  # diverse rows from the start: see HEAD_SCALE
            self.head.weight.mul_(HEAD_SCALE)

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        logits = self.head(self.body(z))
        return [torch.softmax(part, dim=1) for part in torch.split(logits, self.sizes, dim=1)]


def mean_marginal(probs: list[torch.Tensor], attrs: tuple[int, ...]) -> torch.Tensor:
    """The mean over rows of the outer product of ``attrs``' distributions, flattened in C
    order (the model's marginal on ``attrs`` estimated from these latents)."""
    rows = probs[attrs[0]]
    if len(attrs) == 1:
        return rows.mean(0)
    for a in attrs[1:-1]:
        rows = (rows.unsqueeze(2) * probs[a].unsqueeze(1)).reshape(rows.shape[0], -1)
    return (rows.T @ probs[attrs[-1]]).reshape(-1) / rows.shape[0]


class MarginalFitter:
    """Fits a :class:`MarginalNetwork` to noisy measurements; the fit continues across calls.

    Args:
        sizes: codes per attribute.
        n_rows: the public row count (measurements are counts; the model gives shares).
        latent_dim, hidden, lr, anchors: ``model.embedding_dim``, ``generator_dim``, ``lr``,
            ``batch_size``.
        seed: ``model.seed`` (see the module docstring).
        device: where the network trains.
    """

    def __init__(self, sizes: list[int], n_rows: int, latent_dim: int, hidden: list[int], lr: float,
                 anchors: int, seed: int, device: torch.device):
        self.n_rows, self.device = float(n_rows), device
        self.network = MarginalNetwork(latent_dim, hidden, sizes, torch.Generator().manual_seed(seed),
                                       anchors).to(device)
        self.optimizer = adam(self.network.parameters(), device, lr=lr, betas=(0.9, ADAM_BETA2))
        self._probs: list[torch.Tensor] | None = None
        self.steps_run = 0

    def _groups(self, measurements: list[Measurement]) -> list[tuple[tuple[int, ...], torch.Tensor, float]]:
        """Measurements of the same marginal combined by inverse-variance weighting:
        ``(attrs, target shares, weight (n / sigma)**2)``."""
        by_attrs: dict[tuple[int, ...], list[Measurement]] = {}
        for m in measurements:
            by_attrs.setdefault(tuple(m.attrs), []).append(m)
        groups = []
        for attrs, ms in by_attrs.items():
            precision = sum(1.0 / m.sigma ** 2 for m in ms)
            values = sum(m.values / m.sigma ** 2 for m in ms) / precision
            target = torch.as_tensor(values / self.n_rows, dtype=torch.float32, device=self.device)
            groups.append((attrs, target, self.n_rows ** 2 * precision))
        return groups

    def fit(self, measurements: list[Measurement], steps: int) -> float:
        """``steps`` optimizer steps on every measurement so far (on CPU in one torch thread,
        see :func:`one_cpu_thread`).

        Returns:
            The loss of the last step: squared residuals in noise units per measured cell.
        """
        with one_cpu_thread(self.device):
            return self._fit(measurements, steps)

    def start_at(self, measurements: list[Measurement]) -> None:
        """Set the output biases to the log of each attribute's measured shares
        (:func:`one_way_counts`, plus :data:`SHARE_FLOOR` of a uniform share), so the fit
        starts at the measured one-way shares instead of pulling every anchor's softmax
        there from near-uniform: that pull can overshoot a rare level to zero mass in every
        anchor, where its gradient vanishes (see :data:`ADAM_BETA2` for the other half of the
        remedy). A level of 1.4% (5 rows of 349) measured almost exactly (epsilon 100) was
        fitted at 0.00-0.01% on 3 of 3 seeds before, 1.5-1.7% with this start."""
        sizes = self.network.sizes
        offsets = np.cumsum([0] + sizes)
        with torch.no_grad():
            for a, counts in one_way_counts(measurements, sizes).items():
                shares = counts / max(float(counts.sum()), 1e-12) + SHARE_FLOOR / sizes[a]
                self.network.head.bias[offsets[a]:offsets[a + 1]] = torch.as_tensor(
                    np.log(shares / shares.sum()), dtype=torch.float32, device=self.device)
        self._probs = None

    def _fit(self, measurements: list[Measurement], steps: int) -> float:
        if self.steps_run == 0:
            self.start_at(measurements)
        groups = self._groups(measurements)
        cells = float(sum(len(t) for _, t, _ in groups))
        self.network.train()
        recent: list[float] = []
        for _ in range(steps):
            probs = self.network(self.network.anchors)  # the whole model: its marginals are exact
            loss = sum(w * ((mean_marginal(probs, a) - t) ** 2).sum() for a, t, w in groups) / cells
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            recent = (recent + [float(loss.detach())])[-max(steps // 10, 1):]
        self.steps_run += steps
        self.network.eval()
        self._probs = None
        return float(np.mean(recent)) if recent else float("nan")

    @torch.no_grad()
    def marginal(self, attrs: tuple[int, ...]) -> np.ndarray:
        """The model's marginal on ``attrs`` (shares, flattened in C order), exactly."""
        if self._probs is None:
            self._probs = self.network(self.network.anchors)
        return mean_marginal(self._probs, tuple(attrs)).double().cpu().numpy()


@torch.no_grad()
def draw_codes(network: MarginalNetwork, n: int, gen: torch.Generator,
               weights: dict[int, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` anchors (uniformly) and a code per attribute from the network's distributions.

    With ``weights`` (``{attribute: share of each code meeting a condition}``), a latent
    ``z`` is kept with probability ``P(condition | z) = prod_j sum_k p_jk(z) w_jk`` and the
    conditioned attributes are drawn from ``p_j(z) * w_j`` renormalised: rejection sampling
    of the latent, which draws exactly from the model's conditional distribution.

    Returns:
        ``(codes (n, attributes) int64, kept (n,) bool)``; without ``weights`` all are kept.
    """
    device = next(network.parameters()).device
    pick = torch.randint(len(network.anchors), (n,), generator=gen, device=device)
    probs = network(network.anchors[pick])
    weights = weights or {}
    accept = torch.ones(n, dtype=torch.float64, device=device)
    for j, w in weights.items():
        w_t = torch.as_tensor(w, dtype=probs[j].dtype, device=device)
        probs[j] = probs[j] * w_t
        mass = probs[j].sum(1)
        accept = accept * mass.double()
        probs[j] = probs[j] / mass.clamp_min(1e-30).unsqueeze(1)
    kept = torch.rand(n, generator=gen, device=device, dtype=torch.float64) < accept if weights else \
        torch.ones(n, dtype=torch.bool, device=device)
    codes = torch.empty(n, len(probs), dtype=torch.int64, device=device)
    for j, p in enumerate(probs):  # inverse CDF: the first code whose cumulative share passes u; never a zero one
        cdf = torch.cumsum(p.double(), dim=1)
        u = torch.rand(n, 1, generator=gen, device=device, dtype=torch.float64) * cdf[:, -1:]
        codes[:, j] = (cdf <= u).sum(1).clamp_max(p.shape[1] - 1)
    return codes.cpu().numpy(), kept.cpu().numpy()
