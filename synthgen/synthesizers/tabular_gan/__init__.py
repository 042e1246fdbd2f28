"""``model.name: tabular_gan`` - synthgen's own CTGAN-style engine.

The model is CTGAN's (Xu et al. 2019): mode-specific normalization of continuous
columns, one-hot categoricals, a conditional vector with training-by-sampling, a
residual generator and a packed critic. What differs is how it is computed:

* **Vectorized everywhere.** The fitted :class:`~synthgen.transformers.mode_normalizer.ModeNormalizer`
  is a batched EM, not a Bayesian mixture per column. The table lives on the device
  as per-row ``alpha`` values plus the positions of its hot entries; a batch is
  gathered and densified with one ``scatter`` per step. Conditions are drawn with
  precomputed index arrays (a column uniformly, a level by log-frequency, then a row
  of that level: ``rows_by_level[start[g] + floor(u * count[g])]``). Generator
  activations over all spans are one ``tanh`` and one *segmented* Gumbel-softmax
  (``scatter_reduce``/``scatter_add`` over span ids), and the conditional
  cross-entropy is one segmented log-sum-exp. No Python loop over rows or columns runs
  inside a training step.
* **Cheaper objective.** By default the critic is trained with the logistic
  (non-saturating) GAN loss and no gradient penalty - packing and dropout keep it
  smooth enough on tabular data - so a step needs no double backward; it is also the
  loss the private critic must use, so DP and non-DP runs share one objective. CTGAN's
  WGAN-GP stays available (``options.loss = "wgan-gp"``) with the penalty applied
  lazily, every ``gp_every`` critic steps with its weight scaled up accordingly
  (StyleGAN2's lazy regularisation). Networks are half CTGAN's width (128, 128).
* **Explicit randomness.** Parameters are initialized, dropout masks, Gumbel noise and
  batches are drawn from ``torch.Generator`` objects seeded from ``model.seed``; no
  global seeding. Same seed, same device -> the same model and the same rows.
* **Missing values and high cardinality** are handled deliberately: the preparer turns
  missing numbers into a ``<col>__missing`` level column modelled jointly with the
  rest (and pools levels beyond ``data.max_categories``); this engine never builds a
  dense one-hot of the table, so a column with 10,000 levels costs one integer per row
  plus its span in the networks.
* **Wide categoricals are cheap** (``options.wide_min_levels``, default 1024: when the
  discrete block - the conditional vector - has at least that many levels). The
  generator then reads its condition through a learned ``cond_embed_dim``-wide
  embedding (a lookup of the one conditioned level, instead of a 10,000-wide one-hot
  that the residual blocks would carry all the way into the output layer), and the
  critic's first layer (:class:`WideCritic`) is stored input-major and consumes every
  one-hot entry - the real rows' modes and levels and every row's conditional vector -
  as an ``embedding_bag`` of weight rows (the ``alpha`` values as per-sample weights),
  which equals the dense ``Linear`` on the one-hot input; only the generated rows'
  soft Gumbel outputs still go through a matmul. The WGAN penalty (which needs the
  gradient w.r.t. a dense interpolated input) and the DP critic (Opacus' per-sample
  gradients know ``nn.Linear``, not this layer) keep the dense :class:`Critic`.
  ``bench/memory.py`` measures it: 100k rows with a 10,000-level column and
  ``max_categories=10000`` train within 4 GB resident memory.

Fields of ``model`` left unset in params take this family's defaults
(:data:`FAMILY_DEFAULTS`, chosen with ``bench/tabular.py``); an unset ``epochs`` becomes
a budget of optimizer steps with a floor of passes (:data:`STEP_BUDGET`,
:data:`MIN_EPOCHS`), settled on the training table before training starts. The resolved values are what the saved config records.

**Conditional sampling** is exact and bounded: with discrete conditions the generator
is fed the conditional vector of one conditioned column per row (round-robin over the
conditioned columns); rows meeting *all* conditions are kept, for at most
``resample_rounds`` rounds; rows still missing after that are taken from the last round
with the conditioned cells overwritten (discrete: set to the level; numeric: clipped
into ``[low, high]`` and its missing flag cleared). So ``n`` rows always come back,
and the overwrite only touches the rare remainder.

**Differential privacy** (``privacy.epsilon``): see :mod:`synthgen.training.dp`. The critic
is trained with DP-SGD on Poisson-sampled rows (``pac`` = 1, logistic loss, no
gradient penalty); the generator's conditions are drawn from DP-noised level counts,
which also carry the missing rates (missingness is modelled as levels and flags under
DP); continuous modes are evenly spaced over the public ranges; missing numbers are
imputed with the public range midpoint, never the data's median. The noise and the
Poisson sample come from unrecorded OS entropy, so a DP fit is not bit-reproducible.
The privacy ledger (what is charged, what is declared public, what is not covered) is
saved as ``privacy_ledger`` in ``synthesizer.json``'s ``extra``
(:mod:`synthgen.synthesizers.tabular_gan.dp_ledger`).

**Batch size**: rows are drawn with replacement per condition, so any batch works,
but an explicit ``model.batch_size`` larger than the training table is a
:class:`~synthgen.errors.ConfigError`; unset, it is ``min(family default, rows)``.
Batches are rounded down to a multiple of ``pac``.
"""

from __future__ import annotations

from synthgen.synthesizers.tabular_gan.loss import TabularGANLoss
from synthgen.synthesizers.tabular_gan.networks import Critic, Generator, SeededDropout, WideCritic
from synthgen.synthesizers.tabular_gan.sampling import CondSampler, SpanOps
from synthgen.synthesizers.tabular_gan.synthesizer import (
    FAMILY_DEFAULTS,
    MIN_EPOCHS,
    MODEL_FILE,
    STEP_BUDGET,
    TabularGANOptions,
    TabularGANSynthesizer,
)

__all__ = [
    "FAMILY_DEFAULTS", "MIN_EPOCHS", "MODEL_FILE", "STEP_BUDGET", "CondSampler", "Critic", "Generator",
    "SeededDropout", "SpanOps", "TabularGANLoss", "TabularGANOptions", "TabularGANSynthesizer", "WideCritic",
]
