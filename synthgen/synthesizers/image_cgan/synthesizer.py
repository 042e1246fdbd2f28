"""``ImageCGANSynthesizer``, the family class of ``model.name: image_cgan``: its options and
defaults, training through the shared loop, per-class sampling (:class:`GeneratedImages`)
and persistence. The model is described in :mod:`synthgen.synthesizers.image_cgan`."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn

from synthgen.config import ImageModelConfig, ModelConfig, checkpoint_interval
from synthgen.data.images import ImageSet
from synthgen.errors import ConditionError, DataError, ModelError
from synthgen.synthesizers.base import Synthesizer
from synthgen.synthesizers.image_cgan.loss import ImageGANLoss
from synthgen.synthesizers.image_cgan.networks import ImageGenerator, ProjectionDiscriminator
from synthgen.synthesizers.persistence import load_tensors, save_tensors
from synthgen.training.callbacks import CallbackList
from synthgen.training.device import adam, resolve_device
from synthgen.training.disc_augment import POLICIES, DiscriminatorAugment
from synthgen.training.distributed import current as process_group
from synthgen.training.loop import GANLoop, LoopResult

log = logging.getLogger(__name__)

MODEL_FILE = "image_cgan.pt"  # plain tensors and values, read with weights_only=True

STEP_BUDGET = 1200
"""When ``model.epochs`` is unset: ``epochs = ceil(STEP_BUDGET / steps_per_epoch)`` (BENCHMARKS,
"Image GAN: CPU defaults")."""

#: Defaults of ``model.*`` for this family when params leave a field unset (``epochs``: see
#: :data:`STEP_BUDGET`).
FAMILY_DEFAULTS: dict[str, Any] = {
    "batch_size": 32,  # capped at the number of training images
    "generator_dim": [16],  # base width w of the generator (see the module docstring)
    "discriminator_dim": [16],  # base width of the discriminator
    "embedding_dim": 128,  # dimension of the noise z
    "lr": 1e-3,
}


@dataclass
class ImageCGANOptions:
    """Engine knobs not exposed in params (the benchmark may set them).

    Attributes:
        critic_steps: discriminator updates per generator update. Default 1.
        betas: Adam betas of both networks. Default (0.5, 0.999) (SNGAN's).
        lr_d_mult: discriminator learning rate = ``model.lr`` x this. Default 1.0.
        d_extra_blocks: residual blocks at 4 x 4 after the discriminator's down-blocks.
            Default 1 (without it an 8 x 8 discriminator has one block whose 6 x 6
            receptive fields are sum-pooled: it cannot see a digit's shape).
        g_extra_blocks: conditional residual blocks at 4 x 4 before the generator's
            up-blocks. Default 0.
        upsample: how the generator's blocks double the resolution before their 3 x 3
            convolution: ``"bilinear"`` (default; resize-then-convolve, no 2-pixel grid) or
            ``"nearest"`` (SNGAN's; what models saved without this option were trained with,
            and what they load with).
        diffaugment_policy: DiffAugment's policies under ``model.disc_augment: diffaugment``
            (:data:`~synthgen.training.disc_augment.POLICIES`). Default all three.
    """

    critic_steps: int = 1
    betas: tuple[float, float] = (0.5, 0.999)
    lr_d_mult: float = 1.0
    d_extra_blocks: int = 1
    g_extra_blocks: int = 0
    upsample: str = "bilinear"
    diffaugment_policy: tuple[str, ...] = POLICIES


class GeneratedImages(NamedTuple):
    """What :meth:`ImageCGANSynthesizer.sample` returns: uint8 N x H x W x C images and
    their int64 class indices (names in ``model.classes_``)."""

    images: np.ndarray
    labels: np.ndarray


class ImageCGANSynthesizer(Synthesizer):
    """Class-conditional image GAN with ADA / DiffAugment (see :mod:`synthgen.synthesizers.image_cgan`).

    Args:
        config: the ``model`` section (only the image options are kept; unset fields take
            :data:`FAMILY_DEFAULTS`).
        checkpoint_dir: where :class:`GANLoop` writes checkpoints (every
            ``model.checkpoint_every`` epochs or minutes of training, and after the last
            epoch) and resumes from; default ``None``.
    """

    name: ClassVar[str] = "image_cgan"
    data_kind: ClassVar[str] = "image"
    config_class: ClassVar[type[ModelConfig]] = ImageModelConfig
    family_defaults: ClassVar[dict[str, Any]] = FAMILY_DEFAULTS
    fitted_attribute: ClassVar[str] = "ema_"
    sample_unit: ClassVar[str] = "images"
    supports_distributed: ClassVar[bool] = True  # under torchrun (see synthgen.training.distributed)

    def __init__(self, config: ModelConfig | None = None, checkpoint_dir: str | Path | None = None):
        self._epochs_explicit = "epochs" in self.own_config(config, with_defaults=False).model_fields_set
        super().__init__(config, checkpoint_dir)
        self.options = ImageCGANOptions()

    def _resolve_config(self, n_images: int) -> None:
        """``model.epochs`` unset: :data:`STEP_BUDGET` steps' worth of epochs (logged)."""
        if self._epochs_explicit:
            return
        batch = min(self.config.batch_size, n_images)
        steps = self._steps_per_epoch(n_images, batch)
        epochs = max(1, math.ceil(STEP_BUDGET / steps))
        self.config = self.config.model_copy(update={"epochs": epochs})
        log.info("image_cgan: %d epochs of %d steps of %d images (model.epochs unset)", epochs, steps, batch)

    # -- fit --------------------------------------------------------------------------------------------
    @staticmethod
    def _steps_per_epoch(n: int, batch: int) -> int:
        """Steps of one pass over ``n`` images; under torchrun each step draws ``batch``
        images on every rank, so an epoch has ``1 / world size`` as many (at least 1)."""
        return max(1, n // (batch * process_group().world_size))

    def _build(self, size: int, channels: int, n_classes: int, device: torch.device) -> None:
        cfg = self.config
        init = torch.Generator().manual_seed(cfg.seed + 1)
        self.generator_ = ImageGenerator(cfg.embedding_dim, cfg.generator_dim[0], size, channels, n_classes, init,
                                         extra_blocks=self.options.g_extra_blocks, upsample=self.options.upsample)
        self.generator_ = self.generator_.to(device)
        if device.type == "cuda":
            self.generator_ = self.generator_.to(memory_format=torch.channels_last)

    def _prepare(self, data: ImageSet) -> ImageSet:
        """Check the training images and record their classes, counts and shape.

        Raises:
            DataError: fewer than 2 images, images not square uint8 N x S x S x C with a
                power-of-two S of at least 8.
        """
        images = np.asarray(data.images)
        if images.ndim != 4 or images.dtype != np.uint8 or len(images) < 2:
            raise DataError(f"training images must be a uint8 N x H x W x C array with N >= 2, "
                            f"got {images.dtype} {images.shape}")
        n, h, w, c = images.shape
        if h != w or h < 8 or h & (h - 1) or c not in (1, 3):
            raise DataError(f"training images must be square with a power-of-two side >= 8 and 1 or 3 "
                            f"channels, got {h} x {w} x {c}")
        self.classes_ = list(data.classes) or ["0"]
        self.image_size_, self.channels_, self.n_train_ = h, c, n
        self.counts_ = np.bincount(data.labels, minlength=len(self.classes_)).astype(int).tolist()
        return data

    def _fit(self, data: ImageSet, callbacks: CallbackList) -> None:
        images = np.asarray(data.images)
        n, h, c = self.n_train_, self.image_size_, self.channels_
        cfg, opts = self.config, self.options
        device = torch.device(resolve_device(cfg.device))
        self.device_ = device
        n_classes = len(self.classes_)
        batch = min(cfg.batch_size, n)
        self.gen_ = torch.Generator(device=device).manual_seed(process_group().seed(cfg.seed))  # per rank
        init = torch.Generator().manual_seed(cfg.seed + 1)
        self._build(h, c, n_classes, device)
        self.critic_ = ProjectionDiscriminator(cfg.discriminator_dim[0], h, c, n_classes, init,
                                               extra_blocks=opts.d_extra_blocks).to(device)
        if device.type == "cuda":
            self.critic_ = self.critic_.to(memory_format=torch.channels_last)
        self.ema_ = copy.deepcopy(self.generator_).eval()
        self.ema_.requires_grad_(False)
        self.augment_ = DiscriminatorAugment(cfg.disc_augment, cfg.ada_target, cfg.ada_kimg, cfg.ada_interval,
                                             orientation=cfg.ada_orientation,
                                             policy=tuple(opts.diffaugment_policy)).to(device)
        self.ada_trace_: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (step, p, r_t) per ADA interval
        reals = torch.as_tensor(images, device=device).permute(0, 3, 1, 2).float() / 127.5 - 1
        if device.type == "cuda":
            reals = reals.contiguous(memory_format=torch.channels_last)
        labels = torch.as_tensor(data.labels, device=device, dtype=torch.long)
        probs = torch.as_tensor(self.counts_, dtype=torch.float, device=device)
        loss = ImageGANLoss(self, reals, labels, probs / probs.sum(), batch)
        opt_g = adam(self.generator_.parameters(), device, lr=cfg.lr, betas=opts.betas)
        opt_d = adam(self.critic_.parameters(), device, lr=cfg.lr * opts.lr_d_mult, betas=opts.betas)
        every, seconds = checkpoint_interval(cfg.checkpoint_every)
        loop = GANLoop(
            loss, self.generator_, self.critic_, opt_g, opt_d, epochs=cfg.epochs,
            steps_per_epoch=self._steps_per_epoch(n, batch), critic_steps=opts.critic_steps, callbacks=callbacks,
            checkpoint_dir=self.checkpoint_dir, checkpoint_every=every, checkpoint_seconds=seconds,
            rngs={"torch": self.gen_}, fingerprint=self._fingerprint(images, data.labels, batch, device),
            extra_modules={"ema": self.ema_, "augment": self.augment_},
        )
        self.generator_.train()
        self.critic_.train()
        result: LoopResult = loop.run()
        self.generator_.eval()
        self.refresh_ema_stats()
        self.loop_result_ = result
        self.batch_ = batch

    def _fingerprint(self, images: np.ndarray, labels: np.ndarray, batch: int, device: torch.device) -> str:
        """What a checkpoint must share to be resumed: the images, labels and settings that change
        a training step, and the device type (random generator states differ per device); not
        ``epochs`` (a longer run continues a shorter one), ``checkpoint_every`` or ``sample_every``."""
        h = hashlib.sha256()
        cfg = self.config.model_dump(exclude={"epochs", "checkpoint_every", "sample_every", "device"})
        parts: list[Any] = [cfg, device.type, asdict(self.options), batch, self.classes_]
        world = process_group().world_size
        if world > 1:  # each rank's draws depend on the world size
            parts.append({"world_size": world})
        h.update(json.dumps(parts, sort_keys=True, default=str).encode())
        h.update(np.ascontiguousarray(images).tobytes())
        h.update(np.ascontiguousarray(labels).tobytes())
        return h.hexdigest()

    def extra_meta(self) -> dict[str, Any]:
        """Facts recorded beside the model: epochs, final ADA ``p`` and ``r_t``, options."""
        meta: dict[str, Any] = {"options": asdict(self.options)}
        res = getattr(self, "loop_result_", None)
        if res is not None:
            meta.update(epochs_run=res.epochs_run, resumed_from=res.resumed_from, batch_size=self.batch_,
                        ada_p_final=float(self.augment_.p), ada_rt_final=float(self.augment_.rt))
        return meta

    @torch.no_grad()
    def refresh_ema_stats(self, batches: int = 4, batch: int = 128) -> None:
        """Recompute the EMA generator's BatchNorm statistics from its own activations.

        The running statistics copied from the trained generator describe *its* weights,
        not the averaged ones; sampling in eval mode with them blurs images. This runs
        ``batches`` forward passes of fixed noise (seed ``model.seed + 2``) and labels
        drawn by the training counts, and stores the exact averages.
        """
        gen = torch.Generator().manual_seed(self.config.seed + 2)
        norms = [m for m in self.ema_.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        probs = torch.as_tensor(self.counts_, dtype=torch.float)
        self.ema_.train()
        for _ in range(batches):
            z = torch.randn(batch, self.config.embedding_dim, generator=gen)
            y = torch.multinomial(probs / probs.sum(), batch, replacement=True, generator=gen)
            self.ema_(z.to(self.device_), y.to(self.device_))
        self.ema_.eval()
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum

    # -- sample ------------------------------------------------------------------------------------------
    def class_index(self, value: Any) -> int:
        """The index of a class given by name (``"7"``) or, failing that, by index (``7``)."""
        if str(value) in self.classes_:
            return self.classes_.index(str(value))
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value < len(self.classes_):
            return int(value)
        raise ConditionError(f"label {value!r} is not a training class; classes: {self.classes_}")

    def _labels(self, n: int, conditions: Mapping[str, Any] | None, rng: np.random.Generator) -> np.ndarray:
        conditions = dict(conditions or {})
        unknown = [k for k in conditions if k != "label"]
        if unknown:
            raise ConditionError(f"image conditions take only 'label', got {unknown}")
        if "label" in conditions:
            return np.full(n, self.class_index(conditions["label"]), dtype=np.int64)
        share = np.asarray(self.counts_, dtype=float) / sum(self.counts_) * n  # stratified, largest remainder
        counts = np.floor(share).astype(int)
        counts[np.argsort(-(share - counts), kind="stable")[: n - counts.sum()]] += 1
        return rng.permutation(np.repeat(np.arange(len(counts)), counts)).astype(np.int64)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, labels: torch.Tensor, chunk: int = 512) -> np.ndarray:
        """Images of the EMA generator for noise ``z`` and class indices ``labels`` (uint8 NHWC)."""
        self.ema_.eval()
        out = []
        for start in range(0, len(z), chunk):
            zz = z[start:start + chunk].to(self.device_)
            yy = labels[start:start + chunk].to(self.device_)
            x = self.ema_(zz, yy).float()
            out.append(((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu())
        return torch.cat(out).numpy()

    def _draw(self, n: int, conditions: Mapping[str, Any] | None, rng: np.random.Generator) -> GeneratedImages:
        """``n`` images: :class:`GeneratedImages` ``(images, labels)``, uint8 N x H x W x C and int64.

        ``conditions``: ``{"label": class}`` (a class name or index) - every image is of
        that class; ``None``: classes in proportion to the training counts (largest
        remainder), in random order.

        Raises:
            ConditionError: a key other than ``label``, or an unknown class.
        """
        labels = self._labels(n, conditions, rng)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        z = torch.randn(n, self.config.embedding_dim, generator=gen)
        return GeneratedImages(self.generate(z, torch.as_tensor(labels)), labels)

    # -- persistence ------------------------------------------------------------------------------------
    def _meta_fields(self) -> dict[str, Any]:
        return {"classes": self.classes_, "counts": self.counts_, "image_size": self.image_size_,
                "channels": self.channels_}

    def _save(self, directory: Path) -> None:
        """:data:`MODEL_FILE`: the EMA generator's weights and the options, plain tensors and values."""
        save_tensors({"ema": {k: v.detach().cpu() for k, v in self.ema_.state_dict().items()},
                      "options": asdict(self.options)}, directory / MODEL_FILE)

    @classmethod
    def _from_meta(cls, meta: dict[str, Any], config: ModelConfig) -> ImageCGANSynthesizer:
        model = cls(config)
        model.classes_, model.counts_ = list(meta["classes"]), list(meta["counts"])
        model.image_size_, model.channels_ = meta["image_size"], meta["channels"]
        model.meta_extra_ = meta.get("extra", {})
        return model

    def _load(self, directory: Path) -> None:
        state = load_tensors(directory / MODEL_FILE, self.name)
        try:
            self.restore_fitted(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelError(f"{directory / MODEL_FILE}: corrupt ({type(exc).__name__}: {exc})") from None

    def restore_fitted(self, state: dict[str, Any]) -> None:
        """Set the fitted state from the dict :meth:`_save` writes to :data:`MODEL_FILE`."""
        opts = dict(state["options"])
        opts["betas"] = tuple(opts["betas"])
        opts["diffaugment_policy"] = tuple(opts.get("diffaugment_policy", POLICIES))
        opts.setdefault("upsample", "nearest")  # saved before the option: trained with nearest upsampling
        self.options = ImageCGANOptions(**opts)
        self.device_ = torch.device(resolve_device(self.config.device))
        self._build(self.image_size_, self.channels_, len(self.classes_), self.device_)
        self.ema_ = self.generator_
        self.ema_.load_state_dict(state["ema"])
        self.ema_.eval()
