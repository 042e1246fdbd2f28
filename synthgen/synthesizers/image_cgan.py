"""``model.name: image_cgan`` - a class-conditional SNGAN for small images (8 to 256 px).

The model follows the SNGAN / projection-discriminator recipe (Miyato & Koyama 2018)
that StudioGAN uses as its conditional baseline:

* **Generator**: ``z`` -> linear -> 4 x 4 feature map -> one residual up-block per
  doubling (nearest upsampling, 3 x 3 convolutions, 1 x 1 shortcut) -> BN, ReLU,
  3 x 3 convolution, ``tanh``. Every BatchNorm inside the blocks is *conditional*:
  affine-free BN with gain ``1 + gamma(y)`` and bias ``beta(y)`` from class embeddings
  (initialized to 0). Widths: ``w * min(8, 2**k)`` at the k-th resolution below the
  output, ``w = model.generator_dim[0]``.
* **Discriminator**: residual down-blocks (average pooling) from the input resolution
  to 4 x 4, one residual block at 4 x 4 (``d_extra_blocks``; its 3 x 3 convolutions
  give every 4 x 4 feature a view of the whole 8 x 8 image, so the class-specific
  projection can see shapes rather than a bag of local strokes), ReLU, global sum
  pooling, then ``linear(h) + <embed(y), h>`` (projection head). Spectral norm on
  every convolution, linear layer and the class embedding; widths mirror the
  generator's (``w = model.discriminator_dim[0]``).
* **Optimizer**: Adam, betas (0.5, 0.999), the same ``model.lr`` for both networks
  (:class:`ImageCGANOptions`). The demo uses ``lr`` 1e-3: at SNGAN's 2e-4 the
  class-conditional gains start at 0 and move about ``lr`` per step, so a few hundred
  CPU steps left the labels ignored (generated-class accuracy near chance).
* **Loss**: hinge; optional R1 penalty ``model.r1_gamma / 2 * |grad D(x)|^2`` on
  *non-augmented* reals (``grid_sample`` in the augmentation has no double backward).
* **Augmentation**: :class:`~synthgen.augmentation.DiscriminatorAugment`
  (``model.augment``: ``ada`` | ``diffaugment`` | ``none``) wraps only the
  discriminator's input, for real and fake images in both steps; ADA's ``p`` is
  adjusted every ``model.ada_interval`` steps and logged per epoch (``ada_p``, and the
  overfitting statistic ``ada_rt`` = E[sign(D(real))]).
* **EMA generator** (``model.ema``, default 0.999; 0 = off) is what :meth:`sample`
  uses; its decay ramps up as ``min(ema, (1 + t) / (10 + t))`` over step ``t`` so a
  short run is not dominated by the initial weights. After training its BatchNorm
  statistics are recomputed from its own activations (:meth:`refresh_ema_stats`);
  sampling runs in eval mode, so an image depends only on its own noise and label.
* **Unconditional** when there is one class: the embeddings have one row, which is the
  same as plain affine BatchNorm and a linear head.

Training uses the shared :class:`~synthgen.training.loop.GANLoop` (checkpoints of the
networks, optimizers, RNG states, the EMA generator and the augmentation's buffers -
so a resumed run keeps ``p``). On CUDA the forward passes run under bf16 ``autocast``
(no loss scaler needed) with channels-last tensors; on CPU everything is float32 and,
for a fixed ``model.seed``, deterministic: all randomness (initialization, batches,
noise, labels, augmentation) is drawn from ``torch.Generator`` objects.

Fields of ``model`` left unset take :data:`FAMILY_DEFAULTS`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from synthgen.augmentation import DiscriminatorAugment
from synthgen.config import ModelConfig
from synthgen.data.images import ImageSet
from synthgen.errors import ConditionError, DataError, ModelError
from synthgen.io import atomic_path
from synthgen.training.callbacks import Callback, CallbackList
from synthgen.training.device import resolve_device
from synthgen.training.loop import GANLoop, LoopResult

log = logging.getLogger(__name__)

META_FILE = "synthesizer.json"  # the same name as the tabular families: synthgen.load finds it
MODEL_FILE = "image_cgan.pt"

#: Defaults of ``model.*`` for this family when params leave a field unset.
FAMILY_DEFAULTS: dict[str, Any] = {
    "epochs": 100,
    "batch_size": 64,  # capped at the number of training images
    "generator_dim": [64],  # base width w of the generator (see the module docstring)
    "discriminator_dim": [64],  # base width of the discriminator
    "embedding_dim": 128,  # dimension of the noise z
    "lr": 2e-4,
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
    """

    critic_steps: int = 1
    betas: tuple[float, float] = (0.5, 0.999)
    lr_d_mult: float = 1.0
    d_extra_blocks: int = 1
    g_extra_blocks: int = 0


class GeneratedImages(NamedTuple):
    """What :meth:`ImageCGANSynthesizer.sample` returns: uint8 N x H x W x C images and
    their int64 class indices (names in ``model.classes_``)."""

    images: np.ndarray
    labels: np.ndarray


# -- initialization without the global RNG ------------------------------------------------------------
def _xavier(weight: torch.Tensor, gen: torch.Generator, gain: float = 1.0) -> None:
    fan_out = weight.shape[0] * (weight[0, 0].numel() if weight.ndim > 2 else 1)
    fan_in = weight.shape[1] * (weight[0, 0].numel() if weight.ndim > 2 else 1)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        weight.uniform_(-bound, bound, generator=gen)


def _init(module: nn.Module, gen: torch.Generator) -> None:
    """Xavier-uniform weights and zero biases for every conv / linear, from ``gen``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            _xavier(m.weight, gen, 1.0 if (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)) else math.sqrt(2))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _sn(module: nn.Module, gen: torch.Generator) -> nn.Module:
    """Spectral norm whose power-iteration vectors are drawn from ``gen``, not the global RNG."""
    module = spectral_norm(module)
    sn = module.parametrizations.weight[0]
    with torch.no_grad():
        sn._u.copy_(F.normalize(torch.randn(sn._u.shape, generator=gen), dim=0, eps=sn.eps))
        sn._v.copy_(F.normalize(torch.randn(sn._v.shape, generator=gen), dim=0, eps=sn.eps))
        sn._power_method(sn._reshape_weight_to_matrix(module.parametrizations.weight.original), 15)
    return module


# -- networks --------------------------------------------------------------------------------------------
class CondBatchNorm(nn.Module):
    """Affine-free BatchNorm with class-dependent gain ``1 + gamma(y)`` and bias ``beta(y)``."""

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(n_classes, channels)
        self.bias = nn.Embedding(n_classes, channels)
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.bn(x)
        return h * (1 + self.gain(y))[:, :, None, None] + self.bias(y)[:, :, None, None]


class GBlock(nn.Module):
    """Residual generator block with conditional BN; doubles the resolution when ``up``."""

    def __init__(self, c_in: int, c_out: int, n_classes: int, up: bool = True):
        super().__init__()
        self.up = up
        self.bn1, self.bn2 = CondBatchNorm(c_in, n_classes), CondBatchNorm(c_out, n_classes)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest") if self.up else x

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self._up(F.relu(self.bn1(x, y)))
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + self.skip(self._up(x))


def _widths(base: int, levels: int) -> list[int]:
    """Width at each resolution from 4 x 4 (index 0) to the output (index ``levels``)."""
    return [base * min(8, 2 ** (levels - i)) for i in range(levels + 1)]


class ImageGenerator(nn.Module):
    """``(z, y) -> images`` in [-1, 1], ``channels`` x ``size`` x ``size``."""

    def __init__(self, z_dim: int, width: int, size: int, channels: int, n_classes: int, gen: torch.Generator,
                 extra_blocks: int = 0):
        super().__init__()
        levels = int(math.log2(size)) - 2
        widths = _widths(width, levels)
        self.z_dim, self.start = z_dim, widths[0]
        self.fc = nn.Linear(z_dim, widths[0] * 16)
        extra = [GBlock(widths[0], widths[0], n_classes, up=False) for _ in range(extra_blocks)]  # at 4 x 4
        self.blocks = nn.ModuleList(extra + [GBlock(widths[i], widths[i + 1], n_classes) for i in range(levels)])
        self.bn = nn.BatchNorm2d(widths[-1])
        self.out = nn.Conv2d(widths[-1], channels, 3, padding=1)
        _init(self, gen)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(len(z), self.start, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.out(F.relu(self.bn(h))))


class DBlock(nn.Module):
    """Residual discriminator block (spectral norm); halves the resolution when ``down``.
    A block that keeps the resolution and the width has an identity shortcut."""

    def __init__(self, c_in: int, c_out: int, gen: torch.Generator, first: bool = False, down: bool = True):
        super().__init__()
        self.first, self.down = first, down
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        learned_skip = down or c_in != c_out
        self.skip = nn.Conv2d(c_in, c_out, 1) if learned_skip else None
        _init(self, gen)
        self.conv1, self.conv2 = _sn(self.conv1, gen), _sn(self.conv2, gen)
        if self.skip is not None:
            self.skip = _sn(self.skip, gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if not self.down:
            return h + (x if self.skip is None else self.skip(x))
        h = F.avg_pool2d(h, 2)
        skip = self.skip(F.avg_pool2d(x, 2)) if self.first else F.avg_pool2d(self.skip(x), 2)
        return h + skip


class ProjectionDiscriminator(nn.Module):
    """``(images, y) -> logits``: residual down-blocks, sum pooling, ``linear(h) + <embed(y), h>``."""

    def __init__(self, width: int, size: int, channels: int, n_classes: int, gen: torch.Generator,
                 extra_blocks: int = 1):
        super().__init__()
        levels = int(math.log2(size)) - 2
        widths = [width * min(8, 2**i) for i in range(levels)]  # block i halves size / 2**i
        ins = [channels] + widths[:-1]
        last = widths[-1]
        self.blocks = nn.Sequential(*(DBlock(ins[i], widths[i], gen, first=i == 0) for i in range(levels)),
                                    *(DBlock(last, last, gen, down=False) for _ in range(extra_blocks)))
        self.linear = nn.Linear(last, 1)
        self.embed = nn.Embedding(n_classes, last)
        _init(self.linear, gen)
        _xavier(self.embed.weight, gen)
        self.linear, self.embed = _sn(self.linear, gen), _sn(self.embed, gen)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        return (self.linear(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)).float()


# -- the loss object of GANLoop ------------------------------------------------------------------------
class ImageGANLoss:
    """Hinge loss with augmentation at D's input, R1, ADA's controller and the EMA update."""

    def __init__(self, synth: ImageCGANSynthesizer, reals: torch.Tensor, labels: torch.Tensor,
                 class_probs: torch.Tensor, batch: int):
        self.s = synth
        self.reals, self.labels, self.class_probs, self.batch = reals, labels, class_probs, batch
        self.cfg = synth.config
        self.amp = synth.device_.type == "cuda"

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp) if self.amp else _nullcontext()

    def _real(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.reals), (self.batch,), generator=self.s.gen_, device=self.reals.device)
        return self.reals[idx], self.labels[idx]

    def _fake(self) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.s
        z = torch.randn(self.batch, self.cfg.embedding_dim, generator=s.gen_, device=s.device_)
        y = torch.multinomial(self.class_probs, self.batch, replacement=True, generator=s.gen_)
        return s.generator_(z, y), y

    def critic_loss(self, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.s
        real, y_real = self._real()
        with self._autocast():
            with torch.no_grad():
                fake, y_fake = self._fake()
            d_real = s.critic_(s.augment_(real, s.gen_), y_real)
            d_fake = s.critic_(s.augment_(fake.detach(), s.gen_), y_fake)
        s.augment_.accumulate(d_real)
        loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
        logs = {"loss_d": loss.detach(), "d_real": d_real.detach().mean(), "d_fake": d_fake.detach().mean(),
                "ada_rt": torch.sign(d_real.detach()).mean(), "ada_p": s.augment_.p.detach().clone()}
        if self.cfg.r1_gamma > 0:  # on non-augmented reals, eager float32 (double backward)
            x = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(s.critic_(x, y_real).sum(), x, create_graph=True)
            r1 = grad.square().sum(dim=(1, 2, 3)).mean()
            loss = loss + self.cfg.r1_gamma / 2 * r1
            logs["r1"] = r1.detach()
        return loss, logs

    def generator_loss(self, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.s
        with self._autocast():
            fake, y_fake = self._fake()
            loss = -s.critic_(s.augment_(fake, s.gen_), y_fake).mean()
        return loss, {"loss_g": loss.detach()}

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        s = self.s
        if (step + 1) % self.cfg.ada_interval == 0 and s.augment_.mode == "ada":
            s.augment_.adjust(self.batch * s.options.critic_steps)
            s.ada_trace_.append((step + 1, s.augment_.p.clone(), s.augment_.rt.clone()))  # read per epoch
        decay = min(self.cfg.ema, (1 + step) / (10 + step)) if self.cfg.ema > 0 else 0.0
        for p_ema, p in zip(s.ema_.parameters(), s.generator_.parameters()):
            p_ema.lerp_(p, 1 - decay)
        for b_ema, b in zip(s.ema_.buffers(), s.generator_.buffers()):
            b_ema.copy_(b)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


# -- the synthesizer --------------------------------------------------------------------------------------
class ImageCGANSynthesizer:
    """Class-conditional image GAN with ADA / DiffAugment (see the module docstring).

    Same interface names as the tabular families: ``fit``, ``sample``, ``save``, and
    ``load`` (a classmethod; ``synthgen.load(dir)`` dispatches to it).

    Args:
        config: the ``model`` section (unset fields take :data:`FAMILY_DEFAULTS`).
        checkpoint_dir: where :class:`GANLoop` writes checkpoints every
            ``model.checkpoint_every`` epochs and resumes from; default ``None``.
    """

    name: ClassVar[str] = "image_cgan"
    data_kind: ClassVar[str] = "image"
    loads_itself: ClassVar[bool] = True  # Synthesizer.load hands the directory to ImageCGANSynthesizer.load

    def __init__(self, config: ModelConfig | None = None, checkpoint_dir: str | Path | None = None):
        config = config or ModelConfig(name=self.name)
        unset = {k: v for k, v in FAMILY_DEFAULTS.items() if k not in config.model_fields_set}
        if unset:
            config = ModelConfig(**config.model_copy(update=unset).model_dump())
        self.config = config
        self.checkpoint_dir = checkpoint_dir
        self.options = ImageCGANOptions()

    # -- fit --------------------------------------------------------------------------------------------
    def _build(self, size: int, channels: int, n_classes: int, device: torch.device) -> None:
        cfg = self.config
        init = torch.Generator().manual_seed(cfg.seed + 1)
        self.generator_ = ImageGenerator(cfg.embedding_dim, cfg.generator_dim[0], size, channels, n_classes, init,
                                         extra_blocks=self.options.g_extra_blocks)
        self.generator_ = self.generator_.to(device)
        if device.type == "cuda":
            self.generator_ = self.generator_.to(memory_format=torch.channels_last)

    def fit(self, data: ImageSet, callbacks: Sequence[Callback] = ()) -> ImageCGANSynthesizer:
        """Train on ``data`` (the real train split). Returns ``self``.

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
        cfg, opts = self.config, self.options
        self.classes_ = list(data.classes) or ["0"]
        self.image_size_, self.channels_, self.n_train_ = h, c, n
        self.counts_ = np.bincount(data.labels, minlength=len(self.classes_)).astype(int).tolist()
        device = torch.device(resolve_device(cfg.device))
        self.device_ = device
        n_classes = len(self.classes_)
        batch = min(cfg.batch_size, n)
        tick = time.perf_counter()
        self.gen_ = torch.Generator(device=device).manual_seed(cfg.seed)
        init = torch.Generator().manual_seed(cfg.seed + 1)
        self._build(h, c, n_classes, device)
        self.critic_ = ProjectionDiscriminator(cfg.discriminator_dim[0], h, c, n_classes, init,
                                               extra_blocks=opts.d_extra_blocks).to(device)
        if device.type == "cuda":
            self.critic_ = self.critic_.to(memory_format=torch.channels_last)
        self.ema_ = copy.deepcopy(self.generator_).eval()
        self.ema_.requires_grad_(False)
        self.augment_ = DiscriminatorAugment(cfg.augment, cfg.ada_target, cfg.ada_kimg, cfg.ada_interval,
                                             orientation=cfg.ada_orientation).to(device)
        self.ada_trace_: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (step, p, r_t) per ADA interval
        reals = torch.as_tensor(images, device=device).permute(0, 3, 1, 2).float() / 127.5 - 1
        if device.type == "cuda":
            reals = reals.contiguous(memory_format=torch.channels_last)
        labels = torch.as_tensor(data.labels, device=device, dtype=torch.long)
        probs = torch.as_tensor(self.counts_, dtype=torch.float, device=device)
        loss = ImageGANLoss(self, reals, labels, probs / probs.sum(), batch)
        opt_g = torch.optim.Adam(self.generator_.parameters(), lr=cfg.lr, betas=opts.betas)
        opt_d = torch.optim.Adam(self.critic_.parameters(), lr=cfg.lr * opts.lr_d_mult, betas=opts.betas)
        cbs = CallbackList(callbacks)
        cbs.on_train_start(self)
        loop = GANLoop(
            loss, self.generator_, self.critic_, opt_g, opt_d, epochs=cfg.epochs,
            steps_per_epoch=max(1, n // batch), critic_steps=opts.critic_steps, callbacks=cbs,
            checkpoint_dir=self.checkpoint_dir, checkpoint_every=cfg.checkpoint_every,
            rngs={"torch": self.gen_}, fingerprint=self._fingerprint(images, data.labels, batch),
            extra_modules={"ema": self.ema_, "augment": self.augment_},
        )
        self.generator_.train()
        self.critic_.train()
        result: LoopResult = loop.run()
        self.generator_.eval()
        self.refresh_ema_stats()
        self.loop_result_ = result
        self.batch_ = batch
        self.train_seconds_ = time.perf_counter() - tick
        cbs.on_train_end(self, {"train_seconds": self.train_seconds_})
        return self

    def _fingerprint(self, images: np.ndarray, labels: np.ndarray, batch: int) -> str:
        h = hashlib.sha256()
        cfg = self.config.model_dump(exclude={"epochs", "checkpoint_every", "sample_every"})
        h.update(json.dumps([cfg, asdict(self.options), batch, self.classes_], sort_keys=True, default=str).encode())
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
    def _check_fitted(self) -> None:
        if not hasattr(self, "ema_"):
            raise ModelError(f"{type(self).__name__} is not fitted; call fit() first")

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

    def sample(self, n: int, conditions: Mapping[str, Any] | None = None, seed: int | None = None) -> GeneratedImages:
        """Draw ``n`` images.

        Args:
            n: number of images, at least 1.
            conditions: ``{"label": class}`` (a class name or index) - every image is of
                that class; default ``None``: classes in proportion to the training
                counts (largest remainder), in random order.
            seed: seed of this draw; the same seed gives the same images. Default
                ``None`` (fresh randomness).

        Returns:
            :class:`GeneratedImages` ``(images, labels)``: uint8 N x H x W x C and int64.

        Raises:
            ConditionError: ``n`` not a positive integer, a key other than ``label``, or an
                unknown class.
        """
        self._check_fitted()
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ConditionError(f"number of images must be a positive integer, got {n!r}")
        rng = np.random.default_rng(seed)
        labels = self._labels(int(n), conditions, rng)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        z = torch.randn(int(n), self.config.embedding_dim, generator=gen)
        return GeneratedImages(self.generate(z, torch.as_tensor(labels)), labels)

    # -- persistence ------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write the fitted model (EMA generator and metadata) to ``directory``, atomically."""
        self._check_fitted()
        with atomic_path(directory) as tmp:
            tmp.mkdir(parents=True)
            meta = {"name": self.name, "config": self.config.model_dump(), "classes": self.classes_,
                    "counts": self.counts_, "image_size": self.image_size_, "channels": self.channels_,
                    "n_train": self.n_train_, "train_seconds": self.train_seconds_, "extra": self.extra_meta()}
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
            torch.save({"ema": {k: v.cpu() for k, v in self.ema_.state_dict().items()},
                        "options": asdict(self.options)}, tmp / MODEL_FILE)

    @classmethod
    def load(cls, directory: str | Path) -> ImageCGANSynthesizer:
        """Load a model written by :meth:`save`."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / META_FILE).read_text())
            state = torch.load(directory / MODEL_FILE, map_location="cpu", weights_only=False)
        except FileNotFoundError as exc:
            raise ModelError(f"{directory}: incomplete image_cgan model ({Path(exc.filename).name} missing)") from None
        model = cls(ModelConfig(**meta["config"]))
        opts = state["options"]
        opts["betas"] = tuple(opts["betas"])
        model.options = ImageCGANOptions(**opts)
        model.classes_, model.counts_ = list(meta["classes"]), list(meta["counts"])
        model.image_size_, model.channels_ = meta["image_size"], meta["channels"]
        model.n_train_, model.train_seconds_ = meta["n_train"], meta["train_seconds"]
        model.meta_extra_ = meta.get("extra", {})
        model.device_ = torch.device(resolve_device(model.config.device))
        model._build(model.image_size_, model.channels_, len(model.classes_), model.device_)
        model.ema_ = model.generator_
        model.ema_.load_state_dict(state["ema"])
        model.ema_.eval()
        return model


class AdaIntervalLog(Callback):
    """ADA's ``p`` and ``r_t`` at every adjustment (each ``model.ada_interval`` steps), not
    only their epoch means: passed to ``log_metrics({"ada_p_interval", "ada_rt_interval"},
    step=<global step>)`` once per epoch (one device sync), and kept in :attr:`rows` for
    ``ada.csv``.

    Args:
        log_metrics: ``log_metrics(metrics, step)`` (e.g. the tracker's); default ``None``.
    """

    def __init__(self, log_metrics: Callable[..., None] | None = None):
        self.log_metrics = log_metrics
        self.rows: list[dict[str, float]] = []

    def on_train_start(self, model: Any) -> None:
        self.model = model

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        trace = self.model.ada_trace_
        for step, p, rt in trace:
            row = {"step": step, "ada_p": float(p), "ada_rt": float(rt)}
            self.rows.append(row)
            if self.log_metrics is not None:
                self.log_metrics({"ada_p_interval": row["ada_p"], "ada_rt_interval": row["ada_rt"]}, step=step)
        trace.clear()


class SampleGrid(Callback):
    """Every ``every`` epochs (and the last) a grid of EMA samples - one row per class,
    fixed noise - is written to ``directory/epoch-<n>.png`` and passed to ``log_artifact``
    (e.g. the tracker's, which sends it to MLflow).

    Args:
        directory: where the PNGs go.
        total_epochs: the run's epochs (the last one always gets a grid).
        every: epochs between grids; 0 = the last epoch only. Default 0.
        log_artifact: ``log_artifact(path, artifact_path)``; default ``None``.
        per_class: images per class row. Default 10.
    """

    def __init__(self, directory: str | Path, total_epochs: int, every: int = 0,
                 log_artifact: Callable[[Path, str], None] | None = None, per_class: int = 10):
        self.directory, self.total, self.every = Path(directory), total_epochs, every
        self.log_artifact, self.per_class = log_artifact, per_class
        self.written: list[Path] = []

    def on_train_start(self, model: Any) -> None:
        self.model = model
        k = len(model.classes_)
        gen = torch.Generator().manual_seed(0)
        self.z = torch.randn(k * self.per_class, model.config.embedding_dim, generator=gen)
        self.y = torch.arange(k).repeat_interleave(self.per_class)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        done = epoch + 1
        if not (done == self.total or (self.every and done % self.every == 0)):
            return
        from synthgen.validation.images import sample_grid

        if done < self.total:  # the last epoch's statistics are refreshed by fit itself
            ema = self.model.ema_
            saved = {k: v.clone() for k, v in ema.state_dict().items()}
            self.model.refresh_ema_stats()
            images = self.model.generate(self.z, self.y)
            ema.load_state_dict(saved)
        else:
            self.model.refresh_ema_stats()
            images = self.model.generate(self.z, self.y)
        path = self.directory / f"epoch-{done:05d}.png"
        sample_grid(images, self.y.numpy(), path, nrow=self.per_class)
        self.written.append(path)
        if self.log_artifact is not None:
            self.log_artifact(path, "samples")
