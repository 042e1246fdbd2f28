"""``model.name: dp_marginals`` - differentially private tables from measured marginals.

The method follows the marginal-based line of work that leads published comparisons of
private synthesizers (MST, AIM; McKenna et al. 2021, 2022) and replaces the graphical model
by a neural generator fitted to the noisy marginals (as GEM, RAP and MargNet do):

1. **Discretise with public information only** (:mod:`.discretise`): categorical columns
   over their schema levels, numeric columns into ``model.bins`` (unset: ``sqrt(n) / 4`` of
   the ``n`` train rows, from 10 to 50) equal-width bins over the schema's public range,
   plus point masses and a missing level. Nothing is
   fitted on the real values (``data.public_bounds: true`` declares the schema public, as
   for ``tabular_gan`` under DP).
2. **Measure adaptively under zCDP** (:mod:`.aim`, :mod:`.mechanisms`): with a
   ``data.target`` its 2-way marginal with every other column (together 65% of the
   budget, ``target_share``), without one every 1-way marginal, with the Gaussian
   mechanism, then up to ``model.epochs`` rounds (unset: 2 per
   column, at most 30) in which the exponential mechanism selects a 2-way or (``model.max_order:
   3``, the default) 3-way marginal of at most 10,000 cells by AIM's quality score, the
   Gaussian mechanism measures it and the generator is refitted; the noise is annealed
   as in AIM, and the last round spends what remains. The budget
   ``rho = (sqrt(ln(1/delta) + epsilon) - sqrt(ln(1/delta)))**2`` comes from
   ``privacy.epsilon`` and ``privacy.delta`` (default ``1 / (10 n)``), so the reported
   ``epsilon = rho + 2 sqrt(rho ln(1/delta))`` never exceeds the target.
3. **Fit a generator** (:mod:`.generator`): an MLP from ``model.batch_size`` fixed
   Gaussian latents (anchors) to one softmax per column - the model is the uniform mixture
   of those rows' product distributions - trained by full-batch Adam on the
   inverse-variance weighted squared error between its exact marginals and every noisy
   measurement. This reads only released measurements: post-processing, free of privacy
   cost, and as long as it likes on any device.
4. **Sample**: an anchor, then a code per column from its distribution; a numeric bin
   becomes a uniform value within it (the preparer then restores integers, decimals,
   point masses and dtypes), the missing level a missing cell. **Conditional sampling is
   exact**: categorical equalities and numeric ranges keep a latent with the probability
   the model gives the condition under it and draw the conditioned columns from their
   restricted distributions (rejection sampling of anchors, in passes sized by the
   acceptance seen so far); a condition the model almost never meets is a
   ``ConditionError`` after ``max_condition_draws`` latents, naming its probability.

**Randomness.** Non-noise randomness comes from ``model.seed`` (the anchors and the
network's initialisation; sampling a saved model with a seed gives the same rows). The Gaussian noise and the selections' Gumbel noise come from
:func:`synthgen.training.dp.secret_generator` (OS entropy, never recorded), so a fit is
not bit-reproducible, exactly as ``tabular_gan`` under DP.

**The privacy ledger** (``privacy_ledger`` in ``synthesizer.json``'s ``extra``, in the
format of ``tabular_gan``'s, so the manifest and DATASHEET.md show it) lists every release
- each marginal of the start and each selected one with its ``sigma`` and sensitivity, each selection with
its epsilon and sensitivity, each with its ``rho`` - the totals ``rho``, ``epsilon_spent``
and ``delta``, the mechanism, what is declared public (domains, bounds, bins) and what is
not covered. ``epsilon_spent`` is in ``extra`` too, so ``validation.json`` carries it.
"""

from __future__ import annotations

from synthgen.synthesizers.dp_marginals.discretise import DEFAULT_BINS, Discretiser
from synthgen.synthesizers.dp_marginals.mechanisms import ZCDPBudget, epsilon_for, rho_for
from synthgen.synthesizers.dp_marginals.options import FAMILY_DEFAULTS, DPMarginalsOptions, default_rounds
from synthgen.synthesizers.dp_marginals.synthesizer import MODEL_FILE, DPMarginalsSynthesizer

__all__ = [
    "DEFAULT_BINS", "FAMILY_DEFAULTS", "MODEL_FILE", "DPMarginalsOptions", "DPMarginalsSynthesizer", "Discretiser",
    "ZCDPBudget", "default_rounds", "epsilon_for", "rho_for",
]
