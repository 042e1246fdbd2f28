"""Differentiable augmentation at the discriminator's input: ADA and DiffAugment in one module.

:class:`DiscriminatorAugment` transforms every image the discriminator reads - real
and generated, in the critic step and in the generator step - and nothing else sees
augmented images. Every operation is differentiable with respect to the images, so the
generator's gradient flows through it. Images are ``(N, C, H, W)`` in ``[-1, 1]``.

Modes (``model.disc_augment``):

* ``"ada"`` - StyleGAN2-ADA's "bgc" pipeline (Karras et al. 2020). Each operation fires
  per image with probability ``p``:

  - *blit*: x-flip, rotation by a multiple of 90 degrees, integer translation of up to
    1/8 of the image (``orientation=False``, ``model.ada_orientation: false``: no
    flips and no rotations of any kind, for classes that depend on orientation);
  - *geometric*: isotropic scale (lognormal, sd 0.2 log2), rotation (uniform, applied
    before and after the anisotropic scale, each with probability ``1 - sqrt(1 - p)``),
    anisotropic scale (lognormal, sd 0.2 log2), fractional translation (normal, sd 1/8).
    All geometric and blit operations compose into one affine matrix per image and are
    applied with one bilinear ``grid_sample`` with reflection padding; images for
    which no geometric operation fired are passed through untouched;
  - *color*: brightness (+N(0, 0.2)), contrast (x lognormal, sd 0.5 log2), luma flip,
    hue rotation (uniform) and saturation (x lognormal, sd log2), composed into one
    4x4 color matrix per image. Grayscale images get brightness, contrast and luma
    flip (negation) only.

  ``p`` is a registered buffer (checkpointed with the module; a resumed run keeps it)
  steered by :meth:`DiscriminatorAugment.accumulate` / :meth:`DiscriminatorAugment.adjust`:
  every ``interval`` steps, ``p += sign(r_t - target) * batch * interval / (kimg * 1000)``,
  clamped to ``[0, 1]``, with ``r_t = E[sign(D(real) - c)]`` over the interval: the
  discriminator's raw outputs on the augmented reals of each critic step (ADA's choice),
  measured from ``c``, the midpoint of that step's mean output on reals and on fakes.
* ``"diffaugment"`` - DiffAugment (Zhao et al. 2020) with all three policies: color
  (brightness +U(-0.5, 0.5) on the [-1, 1] scale, as DiffAugment's own code applies it to
  [-1, 1] images (synthgen doubled it before issue 18: shifts of up to half the range,
  which hid brightness from the discriminator), saturation x U(0, 2), contrast x U(0.5, 1.5)),
  translation (integer shift of up to 1/8 with zero padding) and cutout (one square of
  half the image side, zeroed). ``p`` is fixed at 1 (every image, every step).
* ``"none"`` - the identity; ``p`` stays 0.

At ``p = 0`` the module returns its input object unchanged: an exact identity.

**Why r_t is centred (issue 18).** ADA defines ``r_t = E[sign(D(real))]`` for its logistic
loss, whose zero is the real/fake boundary. The hinge loss of ``image_cgan`` does not change
when every output moves by the same constant while the outputs sit inside its margin
``[-1, 1]``, where a spectrally normalised discriminator spends short runs, so nothing holds
its zero and the whole output distribution drifts. Measured on 300 digits at 16 px (no
augmentation, batch 32): the mean output on the training reals was -1.33 at step 117 and +0.76
at step 936, the fakes' -1.77 and +0.13, and reals never trained on scored like the training
ones; the raw sign read -1.00 and +0.99, the offset rather than overfitting (with ADA on, step 540:
+3.12, fakes +2.55, raw r_t +1.00). The issue's run (``d_real`` -0.06, ``d_fake`` -0.39, r_t
-0.36) is this drift: the signature of neither a collapsed discriminator (it ranked reals above
fakes throughout) nor a sign error (the implementation followed its definition). Measured
from the midpoint the same steps read 0.33, 0.59 and 0.43. When D separates with margin
(reals above 1, fakes below -1) ``c`` is about 0 and the two definitions agree.

**What r_t can and cannot see in a CPU run.** ``p`` stayed 0 in the issue's run because the
discriminator was not memorising: 100 epochs of 160 images are 200-300 steps, and even after
1,100 steps on 160 patches at 16 px, D scored the training reals and unseen reals alike
(+0.85 and +0.88 at step 1,000). When it does memorise in a short run, ``r_t`` shows it only
weakly: on 60 vs 300 digits at 16 px (530 and 950 steps) the centred ``r_t`` averaged 0.54 vs
0.55, although only the 60-image discriminator scored unseen reals below its training reals;
on 64 photo patches D scored unseen reals like fakes (-1.30 vs -1.34 at step 1,200) while the
raw ``r_t`` averaged 0.26. Over a few hundred steps ``r_t`` mostly measures how far the
generator is from the data, so ``p`` stays near 0 and ADA acts like no augmentation: on
300 digits at 32 px it gave one image per class (mode collapse) where DiffAugment gave varied,
readable digits. ``model.disc_augment`` therefore defaults to ``diffaugment``. ADA's
controller does respond when the discriminator pulls ahead fast: on 30 digits at 16 px with a
discriminator 4x the generator's width, ``r_t`` stays about 0.6 and ``p`` rises to 0.16 in
300 steps (tests/unit/test_image_generator.py).

**R1 and double backward.** ``grid_sample`` has no double backward in stock PyTorch,
so the R1 penalty (``model.r1_gamma``) is taken on *non-augmented* reals, as in
StyleGAN2-ADA; the augmentation never sits inside a double-backward graph.

All randomness comes from the ``torch.Generator`` passed to :meth:`forward`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("none", "diffaugment", "ada")
POLICIES = ("color", "translation", "cutout")  # DiffAugment's
_LOG2 = math.log(2.0)


def _uniform(n: int, gen: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device)


def _normal(n: int, gen: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.randn(n, generator=gen, device=device)


def _eye(n: int, size: int, device: torch.device) -> torch.Tensor:
    return torch.eye(size, device=device).expand(n, size, size).clone()


def _mat3(rows: list[list[torch.Tensor]]) -> torch.Tensor:
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


class DiscriminatorAugment(nn.Module):
    """Augmentation applied only where the discriminator reads its input.

    Args:
        mode: ``"ada"``, ``"diffaugment"`` or ``"none"``. Default ``"ada"``.
        target: ADA's target for ``r_t``. Default 0.6.
        kimg: ADA speed: ``p`` can move by 1.0 per ``kimg * 1000`` real images.
            Default 500 (the paper's); synthgen's ``model.ada_kimg`` defaults to 20
            because CPU runs see far fewer images.
        interval: steps between adjustments of ``p``. Default 4.
        p: initial probability. Default 0 (ADA, none) or 1 (DiffAugment).
        orientation: ADA's orientation-changing operations (x-flip, 90-degree and
            arbitrary rotations). Default True (the paper's pipeline); False keeps only
            orientation-preserving ones, for data whose class depends on orientation
            (digits: 6 and 9, mirrored 2, 5, 7; text).
        policy: DiffAugment's policies to apply, a subset of :data:`POLICIES`. Default all.
    """

    def __init__(self, mode: str = "ada", target: float = 0.6, kimg: float = 500.0,
                 interval: int = 4, p: float | None = None, orientation: bool = True,
                 policy: tuple[str, ...] = POLICIES):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"augment mode must be one of {MODES}, got {mode!r}")
        if not set(policy) <= set(POLICIES):
            raise ValueError(f"DiffAugment policies must be among {POLICIES}, got {policy!r}")
        self.policy = tuple(policy)
        self.mode, self.target, self.kimg, self.interval = mode, target, kimg, interval
        self.orientation = orientation
        start = p if p is not None else (1.0 if mode == "diffaugment" else 0.0)
        self.register_buffer("p", torch.tensor(float(start)))
        self.register_buffer("rt_sum", torch.tensor(0.0))  # sum of sign(D(real)) this interval
        self.register_buffer("rt_count", torch.tensor(0.0))
        self.register_buffer("rt", torch.tensor(0.0))  # last interval's r_t (for logging)

    # -- the ADA controller ----------------------------------------------------------------
    @staticmethod
    def signs(real_logits: torch.Tensor, fake_logits: torch.Tensor | None = None) -> torch.Tensor:
        """``sign(D(real) - c)`` per real: ``c`` is the midpoint of the step's mean outputs on
        reals and on fakes, or 0 without ``fake_logits`` (ADA's raw sign; see the module docs)."""
        real = real_logits.detach().float()
        if fake_logits is None:
            return torch.sign(real)
        return torch.sign(real - (real.mean() + fake_logits.detach().float().mean()) / 2)

    def accumulate(self, real_logits: torch.Tensor, fake_logits: torch.Tensor | None = None) -> None:
        """Add one step's outputs on (augmented) reals, centred by the step's fakes, to r_t."""
        if self.mode != "ada":
            return
        signs = self.signs(real_logits, fake_logits)
        self.rt_sum += signs.sum()
        self.rt_count += signs.numel()

    def adjust(self, batch: int) -> None:
        """``p += sign(r_t - target) * batch * interval / (kimg * 1000)``, clamped to [0, 1]."""
        if self.mode != "ada" or float(self.rt_count) == 0:
            return
        self.rt.copy_(self.rt_sum / self.rt_count)
        step = torch.sign(self.rt - self.target) * batch * self.interval / (self.kimg * 1000)
        self.p.copy_((self.p + step).clamp(0.0, 1.0))
        self.rt_sum.zero_()
        self.rt_count.zero_()

    # -- forward ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        p = float(self.p)
        if self.mode == "none" or p <= 0.0:
            return x
        if self.mode == "diffaugment":
            return self._diffaugment(x, p, gen)
        x = self._geometric(x, p, gen)
        return self._color(x, p, gen)

    # -- ADA ---------------------------------------------------------------------------------
    def _fires(self, n: int, p: float, gen, device) -> torch.Tensor:
        return _uniform(n, gen, device) < p

    def _geometric(self, x: torch.Tensor, p: float, gen) -> torch.Tensor:
        n, _, h, w = x.shape
        dev = x.device
        one, zero = torch.ones(n, device=dev), torch.zeros(n, device=dev)
        m = _eye(n, 3, dev)  # maps output coordinates to input coordinates (normalized [-1, 1])
        touched = torch.zeros(n, dtype=torch.bool, device=dev)

        def scale(sx, sy):
            return _mat3([[sx, zero, zero], [zero, sy, zero], [zero, zero, one]])

        def rotate(theta):
            c, s = torch.cos(theta), torch.sin(theta)
            return _mat3([[c, -s, zero], [s, c, zero], [zero, zero, one]])

        def translate(tx, ty):
            return _mat3([[one, zero, tx], [zero, one, ty], [zero, zero, one]])

        def apply(fire, matrix):
            nonlocal m, touched
            eye = _eye(n, 3, dev)
            m = m @ torch.where(fire[:, None, None], matrix, eye)
            touched = touched | fire

        # blit
        if self.orientation:
            fire = self._fires(n, p, gen, dev)
            flip = torch.floor(_uniform(n, gen, dev) * 2)
            apply(fire & (flip > 0), scale(1 - 2 * flip, one))
            fire = self._fires(n, p, gen, dev)
            quarter = torch.floor(_uniform(n, gen, dev) * 4)
            apply(fire & (quarter > 0), rotate(-math.pi / 2 * quarter))
        fire = self._fires(n, p, gen, dev)
        tx = torch.round((_uniform(n, gen, dev) * 2 - 1) * 0.125 * w) * 2 / w
        ty = torch.round((_uniform(n, gen, dev) * 2 - 1) * 0.125 * h) * 2 / h
        apply(fire & ((tx != 0) | (ty != 0)), translate(tx, ty))
        # general geometric
        fire = self._fires(n, p, gen, dev)
        s = torch.exp2(_normal(n, gen, dev) * 0.2)
        apply(fire, scale(1 / s, 1 / s))
        p_rot = 1 - math.sqrt(max(0.0, 1 - p)) if self.orientation else 0.0
        fire = self._fires(n, p_rot, gen, dev)
        apply(fire, rotate((_uniform(n, gen, dev) * 2 - 1) * math.pi))
        fire = self._fires(n, p, gen, dev)
        s = torch.exp2(_normal(n, gen, dev) * 0.2)
        apply(fire, scale(1 / s, s))
        fire = self._fires(n, p_rot, gen, dev)
        apply(fire, rotate((_uniform(n, gen, dev) * 2 - 1) * math.pi))
        fire = self._fires(n, p, gen, dev)
        apply(fire, translate(_normal(n, gen, dev) * 0.125 * 2, _normal(n, gen, dev) * 0.125 * 2))
        if not bool(touched.any()):
            return x
        grid = F.affine_grid(m[:, :2, :].to(x.dtype), list(x.shape), align_corners=False)
        moved = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        return torch.where(touched[:, None, None, None], moved, x)

    def _color(self, x: torch.Tensor, p: float, gen) -> torch.Tensor:
        n, c = x.shape[:2]
        dev = x.device
        if c == 1:
            fire = self._fires(n, p, gen, dev)
            bright = torch.where(fire, _normal(n, gen, dev) * 0.2, 0.0)
            fire = self._fires(n, p, gen, dev)
            contrast = torch.where(fire, torch.exp2(_normal(n, gen, dev) * 0.5), 1.0)
            fire = self._fires(n, p, gen, dev)
            flip = torch.where(fire & (_uniform(n, gen, dev) < 0.5), -1.0, 1.0)
            gain = contrast * flip
            touched = (bright != 0) | (gain != 1)
            if not bool(touched.any()):
                return x
            out = x * gain[:, None, None, None] + bright[:, None, None, None]
            return torch.where(touched[:, None, None, None], out, x)
        eye = _eye(n, 4, dev)
        mat = eye.clone()
        touched = torch.zeros(n, dtype=torch.bool, device=dev)
        v = torch.tensor([1.0, 1.0, 1.0, 0.0], device=dev) / math.sqrt(3)
        vv = torch.outer(v, v)

        def apply(fire, matrix):
            nonlocal mat, touched
            mat = torch.where(fire[:, None, None], matrix, eye) @ mat
            touched = touched | fire

        fire = self._fires(n, p, gen, dev)
        t = eye.clone()
        t[:, :3, 3] = (_normal(n, gen, dev) * 0.2)[:, None]
        apply(fire, t)
        fire = self._fires(n, p, gen, dev)
        k = torch.exp2(_normal(n, gen, dev) * 0.5)
        sc = eye.clone()
        sc[:, 0, 0] = sc[:, 1, 1] = sc[:, 2, 2] = k
        apply(fire, sc)
        fire = self._fires(n, p, gen, dev) & (_uniform(n, gen, dev) < 0.5)
        apply(fire, (torch.eye(4, device=dev) - 2 * vv).expand(n, 4, 4))
        fire = self._fires(n, p, gen, dev)
        theta = (_uniform(n, gen, dev) * 2 - 1) * math.pi
        axis = v[:3]
        cross = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]], device=dev)
        rot = eye.clone()
        rot[:, :3, :3] = (torch.cos(theta)[:, None, None] * torch.eye(3, device=dev)
                          + torch.sin(theta)[:, None, None] * cross
                          + (1 - torch.cos(theta))[:, None, None] * torch.outer(axis, axis))
        apply(fire, rot)
        fire = self._fires(n, p, gen, dev)
        s = torch.exp2(_normal(n, gen, dev) * 1.0)
        apply(fire, vv + (torch.eye(4, device=dev) - vv) * s[:, None, None])
        if not bool(touched.any()):
            return x
        mat = mat.to(x.dtype)
        out = torch.einsum("nij,njhw->nihw", mat[:, :3, :3], x) + mat[:, :3, 3, None, None]
        return torch.where(touched[:, None, None, None], out, x)

    # -- DiffAugment -----------------------------------------------------------------------
    def _diffaugment(self, x: torch.Tensor, p: float, gen) -> torch.Tensor:
        n, c, h, w = x.shape
        dev = x.device

        def gate(values: torch.Tensor, neutral: float) -> torch.Tensor:
            fire = self._fires(n, p, gen, dev) if p < 1 else torch.ones(n, dtype=torch.bool, device=dev)
            return torch.where(fire, values, torch.full_like(values, neutral))[:, None, None, None].to(x.dtype)

        if "color" in self.policy:  # brightness, saturation, contrast - on [-1, 1] images, as in DiffAugment's code
            x = x + gate(_uniform(n, gen, dev) - 0.5, 0.0)
            if c > 1:
                mean = x.mean(dim=1, keepdim=True)
                x = (x - mean) * gate(_uniform(n, gen, dev) * 2, 1.0) + mean
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * gate(_uniform(n, gen, dev) + 0.5, 1.0) + mean
        if "translation" in self.policy:
            x = self._translate(x, p, gen)
        return self._cutout(x, p, gen) if "cutout" in self.policy else x

    def _translate(self, x: torch.Tensor, p: float, gen) -> torch.Tensor:
        n, c, h, w = x.shape
        dev = x.device
        # translation: integer shift of up to 1/8 of the side, padded with zeros (DiffAugment's convention)
        sx, sy = int(w * 0.125 + 0.5), int(h * 0.125 + 0.5)
        fire = self._fires(n, p, gen, dev) if p < 1 else torch.ones(n, dtype=torch.bool, device=dev)
        tx = torch.where(fire, torch.randint(-sx, sx + 1, (n,), generator=gen, device=dev), 0)
        ty = torch.where(fire, torch.randint(-sy, sy + 1, (n,), generator=gen, device=dev), 0)
        padded = F.pad(x, [1, 1, 1, 1])
        gx = (torch.arange(w, device=dev)[None, :] + 1 - tx[:, None]).clamp(0, w + 1)
        gy = (torch.arange(h, device=dev)[None, :] + 1 - ty[:, None]).clamp(0, h + 1)
        idx = torch.arange(n, device=dev)[:, None, None]
        return padded.permute(0, 2, 3, 1)[idx, gy[:, :, None], gx[:, None, :]].permute(0, 3, 1, 2)

    def _cutout(self, x: torch.Tensor, p: float, gen) -> torch.Tensor:
        n, c, h, w = x.shape
        dev = x.device
        # cutout: one square of half the side, zeroed
        ch, cw = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
        fire = self._fires(n, p, gen, dev) if p < 1 else torch.ones(n, dtype=torch.bool, device=dev)
        cy = torch.randint(0, h + (1 - ch % 2), (n,), generator=gen, device=dev)
        cx = torch.randint(0, w + (1 - cw % 2), (n,), generator=gen, device=dev)
        ys = torch.arange(h, device=dev)[None, :]
        xs = torch.arange(w, device=dev)[None, :]
        in_y = ((ys - cy[:, None] + ch // 2) >= 0) & ((ys - cy[:, None] + ch // 2) < ch)
        in_x = ((xs - cx[:, None] + cw // 2) >= 0) & ((xs - cx[:, None] + cw // 2) < cw)
        hole = (in_y[:, :, None] & in_x[:, None, :]) & fire[:, None, None]
        return x * (~hole)[:, None].to(x.dtype)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, p={float(self.p):.4f}, target={self.target}, kimg={self.kimg}"
