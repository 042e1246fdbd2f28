"""``model.name: image_cgan`` - a class-conditional SNGAN for small images (8 to 256 px).

The model follows the SNGAN / projection-discriminator recipe (Miyato & Koyama 2018)
that StudioGAN uses as its conditional baseline:

* **Generator**: ``z`` -> linear -> 4 x 4 feature map -> one residual up-block per
  doubling (bilinear upsampling, then 3 x 3 convolutions - resize-then-convolve, no
  2-pixel grid; 1 x 1 shortcut, upsampled bilinearly) -> BN, ReLU, 3 x 3 convolution,
  ``tanh``. (SNGAN's nearest-neighbour upsampling, ``ImageCGANOptions.upsample:
  "nearest"``, left a 2-pixel grid in short runs; models saved before the option load
  with it.) Every BatchNorm inside the blocks is *conditional*:
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
* **Augmentation**: :class:`~synthgen.training.disc_augment.DiscriminatorAugment`
  (``model.disc_augment``: ``ada`` | ``diffaugment`` | ``none``) wraps only the
  discriminator's input, for real and fake images in both steps; ADA's ``p`` is
  adjusted every ``model.ada_interval`` steps and logged per epoch (``ada_p``, and the
  overfitting statistic ``ada_rt`` = E[sign(D(real) - c)], ``c`` the midpoint of the step's
  mean outputs on reals and fakes: under the hinge loss D's zero drifts, see
  :mod:`synthgen.training.disc_augment`).
* **EMA generator** (``model.ema``, default 0.999; 0 = off) is what
  :meth:`ImageCGANSynthesizer.sample` uses; its decay ramps up as ``min(ema, (1 + t) / (10 + t))`` over step ``t`` so a
  short run is not dominated by the initial weights. After training its BatchNorm
  statistics are recomputed from its own activations (:meth:`ImageCGANSynthesizer.refresh_ema_stats`);
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

from synthgen.synthesizers.image_cgan.loss import ImageGANLoss
from synthgen.synthesizers.image_cgan.networks import (
    CondBatchNorm,
    DBlock,
    GBlock,
    ImageGenerator,
    ProjectionDiscriminator,
)
from synthgen.synthesizers.image_cgan.synthesizer import (
    FAMILY_DEFAULTS,
    MODEL_FILE,
    GeneratedImages,
    ImageCGANOptions,
    ImageCGANSynthesizer,
)

# the family's callbacks live with every other callback; re-exported for old imports
from synthgen.training.callbacks import AdaIntervalLog, SampleGrid

__all__ = [
    "FAMILY_DEFAULTS", "MODEL_FILE", "AdaIntervalLog", "CondBatchNorm", "DBlock", "GBlock", "GeneratedImages",
    "ImageCGANOptions", "ImageCGANSynthesizer", "ImageGANLoss", "ImageGenerator", "ProjectionDiscriminator",
    "SampleGrid",
]
