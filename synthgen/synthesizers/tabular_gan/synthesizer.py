"""``TabularGANSynthesizer``, the family class of ``model.name: tabular_gan``: its options,
defaults and step budget, training through the shared loop, exact conditional sampling
and persistence. The engine is described in :mod:`synthgen.synthesizers.tabular_gan`."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from synthgen.config import TabularModelConfig, checkpoint_interval
from synthgen.errors import ConditionError, ConfigError, ModelError
from synthgen.synthesizers.persistence import load_tensors, read_json, save_tensors, write_json
from synthgen.synthesizers.tabular import TabularSynthesizer
from synthgen.synthesizers.tabular_gan.dp_ledger import counts_what, public_items, public_schema
from synthgen.synthesizers.tabular_gan.loss import TabularGANLoss
from synthgen.synthesizers.tabular_gan.options import TabularGANOptions
from synthgen.synthesizers.tabular_gan.networks import Critic, Generator, WideCritic
from synthgen.synthesizers.tabular_gan.sampling import CondSampler, SpanOps
from synthgen.training.callbacks import CallbackList
from synthgen.training.device import adam, resolve_device
from synthgen.training.distributed import current as process_group
from synthgen.training.loop import GANLoop, LoopResult
from synthgen.transformers.mode_normalizer import ModeNormalizer
from synthgen.transformers.prepare import MISSING_SUFFIX, TablePreparer

log = logging.getLogger(__name__)

#: Defaults of ``model.*`` for this family when params leave a field unset.
STEP_BUDGET = 3000
MIN_EPOCHS = 60
"""When ``model.epochs`` is unset: ``epochs = max(MIN_EPOCHS, ceil(STEP_BUDGET /
steps_per_epoch))``. Small tables get a fixed amount of training (the 275-row demo split:
3000 epochs of one step), big ones at least 60 passes (the 53,940-row ``diamonds``: 60
epochs of 107 steps). Both figures come from ``bench/tabular.py`` (BENCHMARKS.md): 3000
steps pass the demo's trust gate where fewer do not; on ``diamonds`` 60 epochs beat
ctgan's 300-epoch quality (0.921 vs 0.916 over 3 seeds) and 30 epochs did not (0.908)."""

FAMILY_DEFAULTS: dict[str, Any] = {
    "batch_size": 500,  # capped at the number of training rows
    "generator_dim": [128, 128],  # half CTGAN's width: ~3x cheaper steps, same quality
    "discriminator_dim": [128, 128],
    "embedding_dim": 128,
    "pac": 10,
    "lr": 2e-4,
}

MODEL_FILE = "tabular_gan.pt"  # weights: plain tensors, read with weights_only=True
TRANSFORMERS_FILE = "transformers.json"  # the fitted preparer and normalizer


class TabularGANSynthesizer(TabularSynthesizer):
    """synthgen's CTGAN-style engine (see :mod:`synthgen.synthesizers.tabular_gan`).

    ``checkpoint_dir`` (default ``None``): where :class:`GANLoop` writes checkpoints
    (every ``model.checkpoint_every`` epochs or minutes of training, and after the last
    epoch) and resumes from.
    """

    name = "tabular_gan"
    config_class = TabularModelConfig
    family_defaults = FAMILY_DEFAULTS
    native_conditions = True
    # Missingness is modelled jointly, as one pattern column (see TablePreparer).
    joint_missing = True
    point_states = False  # point masses are modes of the normalizer (see ModeNormalizer)
    supports_privacy = True
    dp_sgd = True  # Opacus on the critic: the DP-SGD knobs of the privacy section apply
    supports_distributed = True  # under torchrun (see synthgen.training.distributed)

    def __init__(self, schema, config=None, privacy=None, max_categories: int = 500,
                 checkpoint_dir: str | Path | None = None):
        config = self.own_config(config, with_defaults=False)  # before FAMILY_DEFAULTS fill it
        self._epochs_explicit = "epochs" in config.model_fields_set
        self._batch_explicit = "batch_size" in config.model_fields_set
        super().__init__(schema, config, privacy, max_categories, checkpoint_dir)
        self.options = TabularGANOptions()
        if self.privacy.epsilon is not None and not self.privacy.epsilon > 0:
            raise ConfigError(f"privacy.epsilon must be > 0, got {self.privacy.epsilon!r}")

    # -- fit ------------------------------------------------------------------------------------
    def _batch_and_pac(self, n: int) -> tuple[int, int]:
        """The batch (a multiple of pac, at most ``n`` rows) and pac of a fit on ``n`` rows."""
        cfg = self.config
        private = self.privacy.epsilon is not None
        pac = 1 if private else cfg.pac
        if self._batch_explicit and cfg.batch_size > n:
            raise ConfigError(f"model.batch_size={cfg.batch_size} is larger than the {n} training rows")
        batch = min(cfg.batch_size, n) // pac * pac
        if batch < pac:
            raise ConfigError(f"model.batch_size={cfg.batch_size} is smaller than model.pac={pac}")
        return batch, pac

    def _steps_per_epoch(self, n: int, batch: int) -> int:
        """Steps of one pass over ``n`` rows; under torchrun each step draws ``batch`` rows on
        every rank, so an epoch has ``1 / world size`` as many."""
        return max(self.options.min_steps_per_epoch, n // (batch * process_group().world_size))

    def _resolve_config(self, n_rows: int) -> None:
        """``model.epochs`` unset: :data:`STEP_BUDGET` steps' worth, at least :data:`MIN_EPOCHS`."""
        if self._epochs_explicit:
            return
        batch, _ = self._batch_and_pac(n_rows)
        steps = self._steps_per_epoch(n_rows, batch)
        epochs = max(MIN_EPOCHS, math.ceil(STEP_BUDGET / steps))
        self.config = self.config.model_copy(update={"epochs": epochs})
        log.info("tabular_gan: %d epochs of %d steps of %d rows (model.epochs unset)", epochs, steps, batch)

    def _fit(self, prepared: pd.DataFrame, callbacks: CallbackList) -> None:
        import time

        cfg, opts = self.config, self.options
        private = self.privacy.epsilon is not None
        device = torch.device(resolve_device(cfg.device))
        n = len(prepared)
        batch, pac = self._batch_and_pac(n)
        if private and cfg.pac != 1:
            log.info("tabular_gan: pac=1 under differential privacy (per-row clipping)")
        tick = time.perf_counter()
        seed = cfg.seed
        self.gen_ = torch.Generator(device=device).manual_seed(process_group().seed(seed))  # per rank
        init_gen = torch.Generator().manual_seed(seed + 1)
        np_rng = np.random.default_rng(seed)
        # under DP the preparer fitted nothing on the values (public midpoints, levels, flags)
        self.normalizer_ = ModeNormalizer(public_modes=private, bounds=self._bounds(prepared), seed=seed)
        self.normalizer_.fit(prepared, self.preparer_.discrete_columns,
                             levels=self.preparer_.public_levels() if private else None,
                             point_masses=self.preparer_.model_masses)
        encoded = self.normalizer_.transform(prepared, np_rng)
        self.preprocess_seconds_ = time.perf_counter() - tick
        ops = SpanOps(self.normalizer_, device)
        steps = self._steps_per_epoch(n, batch)
        priv = None
        level_counts = None
        codes = encoded.hot[:, self.normalizer_.n_continuous :] - self.normalizer_.disc_start
        if private:
            from synthgen.training.dp import CriticPrivacy

            priv = CriticPrivacy(
                self.privacy.epsilon, self.privacy.delta, self.privacy.max_grad_norm, n, batch,
                planned_steps=cfg.epochs * steps * opts.critic_steps, n_discrete=codes.shape[1],
                accountant=self.privacy.accountant, noise_multiplier=self.privacy.noise_multiplier,
                grad_sample_mode=self.privacy.grad_sample_mode, device=device,
            )  # its noise, Poisson mask and count noise come from unrecorded OS entropy
            true_counts = np.bincount(codes.ravel(), minlength=self.normalizer_.cond_width)
            level_counts = priv.noisy_counts(true_counts)
        sampler = CondSampler(encoded, self.normalizer_, device, level_counts)
        self.sampling_counts_ = (
            np.clip(level_counts, 0, None) if level_counts is not None
            else np.bincount(codes.ravel(), minlength=self.normalizer_.cond_width).astype(float)
        )
        cond_w = self.normalizer_.cond_width
        self.generator_ = self._make_generator(init_gen).to(device)
        wide = self._wide() and not private  # Opacus needs the dense nn.Linear critic
        critic_cls = WideCritic if wide else Critic
        critic = critic_cls(self.normalizer_.width + cond_w, list(cfg.discriminator_dim), pac, opts.dropout, self.gen_).to(device)
        opt_g = adam(self.generator_.parameters(), device, lr=cfg.lr, betas=opts.betas, weight_decay=opts.weight_decay)
        opt_d = adam(critic.parameters(), device, fused=not private, lr=cfg.lr, betas=opts.betas,
                     weight_decay=opts.weight_decay)
        d_module = critic
        if priv is not None:
            d_module, opt_d = priv.wrap(critic, opt_d)
        alpha_t = torch.as_tensor(encoded.alpha, device=device)
        hot_t = torch.as_tensor(encoded.hot, device=device)
        loss = TabularGANLoss(self.generator_, d_module, ops, sampler, alpha_t, hot_t, batch, cfg.embedding_dim,
                              opts, self.gen_, private=private, sample_rate=priv.sample_rate if priv else 1.0,
                              poisson_mask=priv.poisson_mask if priv else None)
        rngs: dict[str, Any] = {"torch": self.gen_, "numpy": np_rng}  # never the secret DP generators
        if priv is not None:
            def restore_counts(counts: np.ndarray) -> None:  # resume: the checkpoint's release, not a new one
                loss.s = CondSampler(encoded, self.normalizer_, device, counts)
                self.sampling_counts_ = np.clip(counts, 0, None)

            priv.on_restore = restore_counts
        every, seconds = checkpoint_interval(cfg.checkpoint_every)
        loop = GANLoop(
            loss, self.generator_, critic, opt_g, opt_d, epochs=cfg.epochs, steps_per_epoch=steps,
            critic_steps=opts.critic_steps, callbacks=callbacks, checkpoint_dir=self.checkpoint_dir,
            checkpoint_every=every, checkpoint_seconds=seconds, rngs=rngs, privacy=priv,
            fingerprint=self._fingerprint(prepared, batch, pac, device),
        )
        self.generator_.train()
        critic.train()
        result: LoopResult = loop.run()
        self.generator_.eval()
        self.loop_result_ = result
        self.device_ = device
        self.batch_ = batch
        self.privacy_summary_ = priv.summary() if priv is not None else None
        if priv is not None:
            self.privacy_ledger_ = priv.ledger(public_items(self.schema, self.preparer_, n),
                                               counts_what=counts_what(self.normalizer_))
            # the schema kept with the model: no real missing rate, no frequency order
            self.schema = public_schema(self.schema, self.normalizer_, self.sampling_counts_)
            self.preparer_.schema = self.schema
            if hasattr(d_module, "_close"):
                d_module._close()

    def _wide(self) -> bool:
        return self.normalizer_.cond_width >= self.options.wide_min_levels

    def _make_generator(self, gen: torch.Generator) -> Generator:
        cfg, norm = self.config, self.normalizer_
        if self._wide():
            k = self.options.cond_embed_dim
            return Generator(cfg.embedding_dim + k, list(cfg.generator_dim), norm.width, gen,
                             cond_embed=(norm.cond_width, k))
        return Generator(cfg.embedding_dim + norm.cond_width, list(cfg.generator_dim), norm.width, gen)

    def _bounds(self, prepared: pd.DataFrame) -> dict[str, tuple[float, float]]:
        """Each numeric column's range: the schema's ``min``/``max`` (``[0, 1]`` for a column
        modelled as its ratio to a bound); without them the
        observed range, except under DP, where that is a :class:`ConfigError` naming the
        column (the range must be public)."""
        out: dict[str, tuple[float, float]] = {}
        for spec in self.schema.columns:
            if spec.modelled and not spec.discrete and spec.name in prepared:
                if spec.name in self.preparer_.bounds:  # modelled as its ratio to the column bounding it
                    out[spec.name] = (0.0, 1.0)
                elif spec.min is not None and spec.max is not None:
                    out[spec.name] = (float(spec.min), float(spec.max))
                elif self.privacy.epsilon is not None:
                    raise ConfigError(f"column {spec.name!r} has no public bounds (schema min/max); "
                                      "under differential privacy every numeric range must be public")
                else:
                    values = prepared[spec.name].to_numpy(dtype=float)
                    out[spec.name] = (float(values.min()), float(values.max()))
        return out

    def _fingerprint(self, prepared: pd.DataFrame, batch: int, pac: int, device: torch.device) -> str:
        """What a checkpoint must share to be resumed: the prepared data and every setting that
        changes what a training step does, with the device type (random generator states differ
        per device). Not ``checkpoint_every``, nor ``epochs`` (a longer run continues a shorter
        one), except under differential privacy, where the planned steps set the noise."""
        h = hashlib.sha256()
        private = self.privacy.epsilon is not None
        exclude = {"checkpoint_every", "device"} | (set() if private else {"epochs"})
        parts: list[Any] = [self.config.model_dump(exclude=exclude), device.type, asdict(self.options), batch, pac]
        world = process_group().world_size
        if world > 1:  # each rank's draws depend on the world size
            parts.append({"world_size": world})
        if private:
            parts += [self.privacy.model_dump(), "dp: secret noise, released counts in the checkpoint"]
        h.update(json.dumps(parts, sort_keys=True, default=str).encode())
        h.update(pd.util.hash_pandas_object(prepared, index=False).to_numpy().tobytes())
        return h.hexdigest()

    def extra_meta(self) -> dict[str, Any]:
        """Training facts, saved as ``extra`` in ``synthesizer.json`` and restored on load.

        Under DP also the privacy summary (``epsilon_spent``, ``epsilon``, ``delta``, the
        noise), ``privacy_ledger`` (see :meth:`synthgen.training.dp.CriticPrivacy.ledger`),
        ``reproducible: False`` and ``not_reproducible_because``.
        """
        meta: dict[str, Any] = dict(getattr(self, "saved_extra_", None) or {})  # a loaded model's record
        meta["options"] = asdict(self.options)
        res = getattr(self, "loop_result_", None)
        if res is not None:
            meta.update(epochs_run=res.epochs_run, stopped_early=res.stopped_early, resumed_from=res.resumed_from,
                        batch_size=self.batch_, preprocess_seconds=self.preprocess_seconds_)
        if getattr(self, "privacy_summary_", None):
            meta.update(self.privacy_summary_)
        ledger = getattr(self, "privacy_ledger_", None)
        if ledger:
            meta.update(epsilon_spent=ledger["epsilon_spent"], privacy_ledger=ledger, reproducible=False,
                        not_reproducible_because=ledger["not_reproducible_because"])
        return meta

    @classmethod
    def _from_meta(cls, meta: dict[str, Any], config: Any) -> TabularGANSynthesizer:
        """The base's, keeping the saved ``extra`` (privacy ledger, epsilon spent) for
        :meth:`extra_meta` of the loaded model."""
        model = super()._from_meta(meta, config)
        model.saved_extra_ = dict(meta.get("extra") or {})
        return model

    # -- sample ------------------------------------------------------------------------------------
    @torch.no_grad()
    def _generate(self, levels: np.ndarray | None, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        b = len(levels) if levels is not None else 0
        norm = self.normalizer_
        z = torch.randn(b, self.config.embedding_dim, generator=gen, device=self.device_)
        lv = torch.as_tensor(levels, device=self.device_) if levels is not None else None
        if self.generator_.cond_embed is not None:
            raw = self.generator_(z, lv)
        else:
            cond = torch.zeros(b, norm.cond_width, device=self.device_)
            if norm.cond_width:
                cond.scatter_(1, lv.unsqueeze(1), 1.0)
            raw = self.generator_(torch.cat([z, cond], dim=1))
        return SpanOps(norm, self.device_).hard_sample(raw, gen)

    def _draw_levels(self, b: int, rng: np.random.Generator) -> np.ndarray:
        """Unconditional: a discrete column uniformly, a level by its frequency."""
        norm = self.normalizer_
        spans = [s for s in norm.spans if s.kind == "level"]
        if not spans:
            return np.zeros(b, dtype=np.int64)
        cols = rng.integers(len(spans), size=b)
        u = rng.random(b)
        starts = np.array([s.start - norm.disc_start for s in spans])
        sizes = np.array([s.size for s in spans])
        out = np.empty(b, dtype=np.int64)
        cum = np.concatenate([
            j + np.cumsum(w := self.sampling_counts_[st : st + sz] + 1e-12) / w.sum()
            for j, (st, sz) in enumerate(zip(starts, sizes))
        ])
        out[:] = np.searchsorted(cum, cols + u)
        return np.minimum(out, len(cum) - 1)

    def _sample(self, n: int, rng: np.random.Generator, conditions: dict[str, Any] | None) -> pd.DataFrame:
        norm = self.normalizer_
        gen = torch.Generator(device=self.device_).manual_seed(int(rng.integers(2**62)))
        self.generator_.eval()
        conditions = conditions or {}
        disc = {c: v for c, v in conditions.items() if c in norm.levels_}
        num = {c: v for c, v in conditions.items() if c not in norm.levels_}
        for col, level in disc.items():
            if level not in norm.lookup_[col]:
                raise ConditionError(f"column {col!r} never had the value {level!r} in training")
        for col in num:
            if col not in norm.continuous_columns_:
                raise ConditionError(f"column {col!r} cannot take a numeric range condition")
        disc_pos = {c: norm.level_position(c, v) for c, v in disc.items()}
        flags = {c: f"{c}{MISSING_SUFFIX}" for c in num if f"{c}{MISSING_SUFFIX}" in norm.levels_}
        flag_pos = {c: norm.level_position(f, "0") for c, f in flags.items() if "0" in norm.lookup_[f]}
        if any(c in flags and c not in flag_pos for c in num):
            raise ConditionError(f"conditions {num}: those columns were never present in training")
        rounds = 1 + (self.options.resample_rounds if conditions else 0)
        kept_a, kept_h, have = [], [], 0
        for r in range(rounds):
            b = max(n - have, 256) if conditions else n
            if disc:
                cols = list(disc_pos.values())
                levels = np.array(cols, dtype=np.int64)[np.arange(b) % len(cols)] - norm.disc_start
            else:
                levels = self._draw_levels(b, rng)
            alpha, hot = self._generate(levels, gen)
            if not conditions:
                return norm.decode_hot(alpha, hot)
            ok = self._satisfies(alpha, hot, disc_pos, num, flag_pos)
            kept_a.append(alpha[ok][: n - have])
            kept_h.append(hot[ok][: n - have])
            have += len(kept_a[-1])
            if have >= n:
                break
        if have < n:  # bounded: overwrite the conditioned cells of the last round's rows
            alpha, hot = alpha[: n - have].copy(), hot[: n - have].copy()
            self._force(alpha, hot, disc_pos, num, flag_pos)
            kept_a.append(alpha)
            kept_h.append(hot)
        frame = norm.decode_hot(np.concatenate(kept_a), np.concatenate(kept_h))
        for col, (lo, hi) in num.items():  # decoding rounds; keep values inside the range
            frame[col] = frame[col].clip(lo, hi)
        return frame

    def _col_index(self, col: str) -> int:
        norm = self.normalizer_
        if col in norm.continuous_columns_:
            return norm.continuous_columns_.index(col)
        return norm.n_continuous + norm.discrete_columns_.index(col)

    def _values(self, alpha: np.ndarray, hot: np.ndarray, col: str) -> np.ndarray:
        return self.normalizer_.values_of(alpha, hot, self.normalizer_.continuous_columns_.index(col))

    def _satisfies(self, alpha, hot, disc_pos, num, flag_pos) -> np.ndarray:
        ok = np.ones(len(hot), dtype=bool)
        for col, pos in disc_pos.items():
            ok &= hot[:, self._col_index(col)] == pos
        for col, (lo, hi) in num.items():
            v = self._values(alpha, hot, col)
            ok &= (v >= lo) & (v <= hi)
        for col, pos in flag_pos.items():
            ok &= hot[:, self._col_index(f"{col}{MISSING_SUFFIX}")] == pos
        return ok

    def _force(self, alpha, hot, disc_pos, num, flag_pos) -> None:
        norm = self.normalizer_
        for col, pos in disc_pos.items():
            hot[:, self._col_index(col)] = pos
        for col, pos in flag_pos.items():
            hot[:, self._col_index(f"{col}{MISSING_SUFFIX}")] = pos
        for col, (lo, hi) in num.items():
            i = norm.continuous_columns_.index(col)
            v = np.clip(self._values(alpha, hot, col), lo, hi)
            mode = hot[:, i] - norm.mode_starts_[i]
            point = mode >= norm.n_modes_[i]  # a point mass: inside the range, or moved below
            mode = np.minimum(mode, norm.n_modes_[i] - 1)
            a = (v - norm.means_[i, mode]) / (4 * norm.stds_[i, mode])
            if point.any():
                a[point] = np.where(self._values(alpha, hot, col)[point] == v[point], 0.0, 2.0)
            # the clipped value may lie beyond its mode's reach (or left a point mass): move to the nearest mode
            far = (np.abs(a) > 1) | (point & (a != 0))
            if far.any():
                active = norm.n_modes_[i]
                near = np.abs(v[far, None] - norm.means_[i, None, :active]).argmin(axis=1)
                hot[far, i] = norm.mode_starts_[i] + near
                a[far] = (v[far] - norm.means_[i, near]) / (4 * norm.stds_[i, near])
            alpha[:, i] = np.where(point & (a == 0), alpha[:, i], np.clip(a, -1, 1))

    # -- persistence ----------------------------------------------------------------------------
    def _save(self, directory: Path) -> None:
        """:data:`MODEL_FILE`: plain tensors (weights, sampling counts) and values;
        :data:`TRANSFORMERS_FILE`: the preparer and the normalizer as JSON."""
        state = {
            "generator": {k: v.detach().cpu() for k, v in self.generator_.state_dict().items()},
            "options": asdict(self.options),
            "sampling_counts": torch.as_tensor(np.asarray(self.sampling_counts_)),
            "batch": int(self.batch_),
        }
        save_tensors(state, directory / MODEL_FILE)
        write_json(directory / TRANSFORMERS_FILE,
                   {"preparer": self.preparer_.to_dict(), "normalizer": self.normalizer_.to_dict()})

    def _load(self, directory: Path) -> None:
        state = load_tensors(directory / MODEL_FILE, self.name)
        parts = read_json(directory / TRANSFORMERS_FILE, self.name)
        try:
            preparer = TablePreparer.from_dict(parts["preparer"])
            normalizer = ModeNormalizer.from_dict(parts["normalizer"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"{directory / TRANSFORMERS_FILE}: corrupt ({type(exc).__name__}: {exc})") from None
        try:
            self.restore_fitted(state, preparer, normalizer)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelError(f"{directory / MODEL_FILE}: corrupt ({type(exc).__name__}: {exc})") from None

    def restore_fitted(self, state: dict[str, Any], preparer: Any, normalizer: ModeNormalizer) -> None:
        """Set the fitted state from the dict :meth:`_save` writes to :data:`MODEL_FILE`
        (``sampling_counts`` a tensor or an array), the fitted preparer and normalizer."""
        opts = dict(state["options"])
        opts["betas"] = tuple(opts["betas"])
        self.options = TabularGANOptions(**opts)
        self.normalizer_ = normalizer
        self.device_ = torch.device(resolve_device(self.config.device))
        self.generator_ = self._make_generator(torch.Generator()).to(self.device_)
        self.generator_.load_state_dict(state["generator"])
        self.generator_.eval()
        self.sampling_counts_ = torch.as_tensor(state["sampling_counts"]).numpy()
        self.batch_ = int(state["batch"])
        self.preparer_ = preparer
