"""``DPMarginalsSynthesizer``, the family class of ``model.name: dp_marginals``: the budget, the
fit (discretise -> measure adaptively -> fit the generator), the privacy ledger, exact
conditional sampling and persistence. The method is described in
:mod:`synthgen.synthesizers.dp_marginals`."""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from synthgen.config import MarginalsModelConfig
from synthgen.data.schema import TableSchema
from synthgen.data.structure import public_structure
from synthgen.errors import ConditionError, ConfigError, ModelError
from synthgen.synthesizers.dp_marginals.aim import run_aim
from synthgen.synthesizers.dp_marginals.discretise import Discretiser
from synthgen.synthesizers.dp_marginals.generator import (
    MarginalFitter, MarginalNetwork, Measurement, draw_codes, one_cpu_thread, one_way_counts,
)
from synthgen.synthesizers.dp_marginals.mechanisms import ZCDPBudget
from synthgen.synthesizers.dp_marginals.options import (
    FAMILY_DEFAULTS, DPMarginalsOptions, default_bins, default_rounds,
)
from synthgen.synthesizers.persistence import load_tensors, read_json, save_tensors, write_json
from synthgen.synthesizers.tabular import TabularSynthesizer
from synthgen.synthesizers.tabular_gan.dp_ledger import PUBLIC_SOURCE, public_items
from synthgen.training.callbacks import CallbackList
from synthgen.training.device import resolve_device
from synthgen.training.dp import SCOPE_NOT_COVERED
from synthgen.transformers.prepare import TablePreparer

log = logging.getLogger(__name__)

MODEL_FILE = "dp_marginals.pt"  # generator weights and the noisy measurements: plain tensors
TRANSFORMERS_FILE = "transformers.json"  # the fitted preparer and discretiser
CONDITION_BATCH = 100_000  # most latents drawn per pass of conditional sampling

MECHANISM = ("dp_marginals: AIM-style adaptive marginals under zCDP - every 1-way marginal (with a target: its "
             "pair with every other column), then marginals "
             "selected by the exponential mechanism, measured with the Gaussian mechanism; a neural "
             "generator fitted to the noisy marginals (post-processing)")

NOT_REPRODUCIBLE_BECAUSE = (
    "the Gaussian noise of every measurement and the Gumbel noise of every selection are drawn from a "
    "generator seeded with OS entropy that is never recorded, so that nobody holding the model can "
    "regenerate and subtract the noise; the same model.seed gives a different model (sampling a saved "
    "model with a given seed still gives the same rows)"
)

#: What differential privacy here does not cover, in plain sentences (the ledger's ``not_covered``).
NOT_COVERED = (
    *SCOPE_NOT_COVERED,
    "The level sets and numeric ranges are decided on the real train split before training (levels seen "
    "fewer than data.min_level_count times are pooled at ingest; column kinds and ranges are inferred "
    "from the values); they are used as the public domain, not released privately.",
    "Choosing among models or settings by their validation on real data (sweeps, re-runs until the "
    "verdict passes), or re-running a fit whose per-round progress already reached the logs or MLflow, "
    "spends privacy that no accountant here records.",
    "The noise comes from torch's pseudo-random generators seeded with 64 bits of OS entropy, not from a "
    "cryptographically secure generator, and floating-point attacks on the Gaussian sampler are not "
    "defended against.",
    "Wall-clock timings are recorded unprotected; the number of rounds run depends only on released "
    "measurements.",
)


class DPMarginalsSynthesizer(TabularSynthesizer):
    """Differentially private tables from adaptively measured marginals (see
    :mod:`synthgen.synthesizers.dp_marginals`). ``privacy.epsilon`` is required.

    ``model.epochs`` caps the adaptive rounds (unset: :func:`default_rounds` of the
    columns); ``model.bins`` (unset: :func:`default_bins` of the rows) and ``model.max_order``
    shape the measurements; ``batch_size``, ``generator_dim``, ``embedding_dim``, ``lr``,
    ``seed`` and ``device`` shape the generator; ``checkpoint_every`` and ``pac`` are not used (a fit takes seconds
    to a minute; there is no critic).

    Raises:
        ConfigError: ``privacy.epsilon`` is not set.
    """

    name = "dp_marginals"
    config_class = MarginalsModelConfig
    family_defaults = FAMILY_DEFAULTS
    native_conditions = True
    supports_privacy = True
    requires_privacy = True  # the config check refuses this family without privacy.epsilon
    description = "a generator fitted to differentially private marginals"
    epoch_unit = "adaptive rounds"

    def __init__(self, schema, config=None, privacy=None, max_categories: int = 500,
                 checkpoint_dir: str | Path | None = None):
        config = self.own_config(config, with_defaults=False)
        self._epochs_explicit = "epochs" in config.model_fields_set
        super().__init__(schema, config, privacy, max_categories, checkpoint_dir)
        if self.privacy.epsilon is None:
            raise ConfigError("privacy.epsilon: model.name 'dp_marginals' is differentially private and needs a "
                              "budget; set privacy.epsilon (e.g. --set privacy.epsilon=3)")
        self.options = DPMarginalsOptions()

    # -- fit ------------------------------------------------------------------------------------
    def _resolve_config(self, n_rows: int) -> None:
        """``model.epochs`` unset: :func:`default_rounds` of the modelled columns;
        ``model.bins`` unset: :func:`default_bins` of the train rows."""
        if self.config.bins is None:
            bins = default_bins(n_rows)
            self.config = self.config.model_copy(update={"bins": bins})
            log.info("dp_marginals: %d bins per numeric column for %d rows (model.bins unset)", bins, n_rows)
        if self._epochs_explicit:
            return
        rounds = default_rounds(sum(c.modelled for c in self.schema.columns))
        self.config = self.config.model_copy(update={"epochs": rounds})
        log.info("dp_marginals: at most %d adaptive rounds (model.epochs unset)", rounds)

    def _fit(self, prepared: pd.DataFrame, callbacks: CallbackList) -> None:
        cfg = self.config
        n = len(prepared)
        delta = self.privacy.delta if self.privacy.delta is not None else 1.0 / (10 * n)
        if delta >= 1.0 / n:
            log.warning("privacy.delta=%g is not below 1/n=%g", delta, 1.0 / n)
        self.discretiser_ = Discretiser(self.preparer_, cfg.bins)
        codes = self.discretiser_.encode(prepared)  # the real rows, read by the mechanisms only
        self.device_ = torch.device(resolve_device(cfg.device))
        budget = ZCDPBudget(self.privacy.epsilon, delta)
        fitter = MarginalFitter(self.discretiser_.sizes, n, cfg.embedding_dim, list(cfg.generator_dim), cfg.lr,
                                cfg.batch_size, cfg.seed, self.device_)
        with one_cpu_thread(self.device_):  # small products: threads only spin (see one_cpu_thread)
            target = self.discretiser_.names.index(self.schema.target) \
                if self.schema.target in self.discretiser_.names else None
            result = run_aim(codes, self.discretiser_.sizes, self.discretiser_.names, budget, fitter, cfg.epochs,
                             cfg.max_order, self.options, callbacks, target=target)
        self.generator_ = fitter.network
        self.measurements_ = result.measurements
        self.rounds_run_ = result.rounds_run
        self.final_loss_ = result.last_loss
        public = public_items(self.schema, self.preparer_, n) + [
            {"column": a.name, "what": "discretisation", "detail": a.describe(), "source": PUBLIC_SOURCE}
            for a in self.discretiser_.attributes]
        self.privacy_ledger_ = budget.ledger(public, NOT_COVERED, MECHANISM, NOT_REPRODUCIBLE_BECAUSE)
        self.schema = self.public_schema()
        self.preparer_.schema = self.schema

    def released_missing_rates(self) -> dict[str, float]:
        """Each possibly missing column's missing share in the first noisy measurement that
        holds it (its one-way counts, or summed out of a pair; clipped at 0): post-processing
        of a release."""
        out: dict[str, float] = {}
        for index, counts in one_way_counts(self.measurements_, self.discretiser_.sizes).items():
            attr = self.discretiser_.attributes[index]
            if attr.missing_code is not None:
                out[attr.name] = float(counts[attr.missing_code] / counts.sum()) if counts.sum() > 0 else 0.0
        return out

    def public_schema(self) -> TableSchema:
        """The schema kept with the model: levels sorted (not by frequency), no notes, the
        released missing shares, the public part of the value structure; bounds, kinds,
        dtypes and the row count stay (declared public)."""
        rates = self.released_missing_rates()
        columns = [replace(spec, categories=sorted(spec.categories, key=str) if spec.categories else spec.categories,
                           note="", missing_rate=rates.get(spec.name, 0.0), structure=public_structure(spec.structure))
                   for spec in self.schema.columns]
        return replace(self.schema, columns=columns)

    def extra_meta(self) -> dict[str, Any]:
        """Fit facts saved as ``extra`` in ``synthesizer.json`` and restored on load: the
        options, rounds run, measurements, the privacy ledger (see
        :meth:`synthgen.synthesizers.dp_marginals.mechanisms.ZCDPBudget.ledger`),
        ``epsilon_spent``, ``epsilon``, ``delta``, ``rho``, ``reproducible: False``."""
        meta: dict[str, Any] = dict(getattr(self, "saved_extra_", None) or {})
        meta["options"] = asdict(self.options)
        ledger = getattr(self, "privacy_ledger_", None)
        if ledger:
            meta.update(epochs_run=self.rounds_run_, measurements=len(self.measurements_),
                        final_loss=self.final_loss_, mechanism=ledger["mechanism"],
                        epsilon_spent=ledger["epsilon_spent"], epsilon=ledger["epsilon"], delta=ledger["delta"],
                        rho=ledger["rho"], privacy_ledger=ledger, reproducible=False,
                        not_reproducible_because=ledger["not_reproducible_because"])
        return meta

    @classmethod
    def _from_meta(cls, meta: dict[str, Any], config: Any) -> DPMarginalsSynthesizer:
        """The base's, keeping the saved ``extra`` (ledger, epsilon spent) for :meth:`extra_meta`."""
        model = super()._from_meta(meta, config)
        model.saved_extra_ = dict(meta.get("extra") or {})
        return model

    # -- sample ------------------------------------------------------------------------------------
    def _sample(self, n: int, rng: np.random.Generator, conditions: dict[str, Any] | None) -> pd.DataFrame:
        with one_cpu_thread(self.device_):
            return self._sample_codes(n, rng, conditions)

    def _sample_codes(self, n: int, rng: np.random.Generator, conditions: dict[str, Any] | None) -> pd.DataFrame:
        gen = torch.Generator(device=self.device_).manual_seed(int(rng.integers(2**62)))
        self.generator_.eval()
        if not conditions:
            codes, _ = draw_codes(self.generator_, n, gen)
            return self.discretiser_.decode(codes, rng)
        weights, ranges = self.discretiser_.condition_weights(conditions)
        kept, have, drawn = [], 0, 0
        batch = max(n, 1024)
        while have < n:
            if drawn >= self.options.max_condition_draws:
                raise ConditionError(
                    f"model {self.name!r} met {dict(conditions)} in {have} of {drawn} draws (a probability of "
                    f"about {have / drawn:.2g}); {n} rows would take more than max_condition_draws="
                    f"{self.options.max_condition_draws}: the condition is too rare under this model")
            codes, ok = draw_codes(self.generator_, batch, gen, weights)
            drawn += batch
            kept.append(codes[ok][: n - have])
            have += len(kept[-1])
            rate = max(have / drawn, 1e-6)  # the next pass draws what the rest needs at the rate seen
            batch = int(min(max((n - have) / rate * 1.2, 1024), CONDITION_BATCH))
        return self.discretiser_.decode(np.concatenate(kept), rng, ranges)

    # -- persistence ----------------------------------------------------------------------------
    def _save(self, directory: Path) -> None:
        """:data:`MODEL_FILE`: the generator's weights and shape, the noisy measurements
        (released: post-processing may keep them); :data:`TRANSFORMERS_FILE`: the preparer
        and the discretiser as JSON."""
        state = {
            "generator": {k: v.detach().cpu() for k, v in self.generator_.state_dict().items()},
            "latent_dim": int(self.generator_.latent_dim),
            "hidden": [int(m.out_features) for m in self.generator_.body if isinstance(m, torch.nn.Linear)],
            "options": asdict(self.options),
            "measurements": [{"attrs": [int(a) for a in m.attrs], "values": torch.as_tensor(m.values),
                              "sigma": float(m.sigma)} for m in self.measurements_],
        }
        save_tensors(state, directory / MODEL_FILE)
        write_json(directory / TRANSFORMERS_FILE,
                   {"preparer": self.preparer_.to_dict(), "discretiser": self.discretiser_.to_dict()})

    def _load(self, directory: Path) -> None:
        state = load_tensors(directory / MODEL_FILE, self.name)
        parts = read_json(directory / TRANSFORMERS_FILE, self.name)
        try:
            preparer = TablePreparer.from_dict(parts["preparer"])
            discretiser = Discretiser.from_dict(parts["discretiser"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"{directory / TRANSFORMERS_FILE}: corrupt ({type(exc).__name__}: {exc})") from None
        try:
            self.options = DPMarginalsOptions(**state["options"])
            self.device_ = torch.device(resolve_device(self.config.device))
            network = MarginalNetwork(int(state["latent_dim"]), [int(h) for h in state["hidden"]], discretiser.sizes,
                                      torch.Generator(), len(state["generator"]["anchors"]))
            network.load_state_dict(state["generator"])
            self.generator_ = network.to(self.device_).eval()
            self.measurements_ = [Measurement(tuple(int(a) for a in m["attrs"]), torch.as_tensor(m["values"]).numpy(),
                                              float(m["sigma"])) for m in state["measurements"]]
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelError(f"{directory / MODEL_FILE}: corrupt ({type(exc).__name__}: {exc})") from None
        self.discretiser_ = discretiser
        self.preparer_ = preparer
