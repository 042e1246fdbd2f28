"""Generated-class accuracy of image_cgan on the digits over training (the demo's learning curve).

Fits ``image_cgan`` on the digits' train split (scikit-learn's bundled 8 x 8 set, 20%
holdout, seed 0) and every ``--every`` epochs samples ``--n-generated`` images from
the EMA generator (BatchNorm statistics refreshed, as after training) and from the raw
generator, and prints the share the judge classifies as the class they were generated
for. The judge (:func:`synthgen.validation.images.fit_judge`, seed 0) is fitted once on
the train split; it scores the real holdout at about 0.99, chance is 0.10.

    nice -n 10 .venv/bin/python bench/images_quality.py --epochs 30 --lr 1e-3 --b1 0.5 --lr-d-mult 1

Defaults: ``--epochs 30 --width 32 --batch 64 --lr 1e-3 --b1 0.5 --lr-d-mult 1
--augment none --every 5 --threads 1`` (the demo's settings except ``augment``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    from synthgen.config import ImageModelConfig
    from synthgen.data.images import DIGITS, read_images, split_images
    from synthgen.synthesizers.image_cgan import ImageCGANSynthesizer
    from synthgen.training.callbacks import Callback
    from synthgen.validation.images import fit_judge

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--width", type=int, default=32, help="base width of both networks (32)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--b1", type=float, default=0.5, help="Adam beta1 of both networks (0.5)")
    parser.add_argument("--lr-d-mult", type=float, default=1.0, help="discriminator lr = lr x this (1)")
    parser.add_argument("--critic-steps", type=int, default=1)
    parser.add_argument("--d-extra-blocks", type=int, default=1)
    parser.add_argument("--augment", default="none", choices=["none", "diffaugment", "ada"])
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--every", type=int, default=5, help="epochs between evaluations (5)")
    parser.add_argument("--n-generated", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train, _ = split_images(read_images(DIGITS, 8), 0.2, seed=0)
    judge = fit_judge(train.images, train.labels, seed=0)
    cfg = ImageModelConfig(name="image_cgan", epochs=args.epochs, batch_size=args.batch, device="cpu", seed=args.seed,
                      generator_dim=[args.width], discriminator_dim=[args.width], disc_augment=args.augment,
                      ema=args.ema, lr=args.lr)
    model = ImageCGANSynthesizer(cfg)
    model.options.betas = (args.b1, 0.999)
    model.options.lr_d_mult, model.options.critic_steps = args.lr_d_mult, args.critic_steps
    model.options.d_extra_blocks = args.d_extra_blocks
    tick = time.perf_counter()

    def accuracy(images: np.ndarray, labels: np.ndarray) -> float:
        _, predicted = judge.predict(images)
        names = np.asarray(model.classes_, dtype=int)[labels]  # class names are the digits
        return float((judge.classes[predicted] == names).mean())

    class Probe(Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
            if (epoch + 1) % args.every and epoch + 1 != args.epochs:
                return
            saved = {k: v.clone() for k, v in model.ema_.state_dict().items()}
            model.refresh_ema_stats()
            ema = model.sample(args.n_generated, seed=1)
            model.ema_.load_state_dict(saved)
            gen = torch.Generator().manual_seed(5)
            z = torch.randn(args.n_generated, cfg.embedding_dim, generator=gen)
            y = torch.arange(args.n_generated) % len(model.classes_)
            model.generator_.eval()
            with torch.no_grad():
                raw = ((model.generator_(z, y) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
            model.generator_.train()
            raw_acc = accuracy(raw.permute(0, 2, 3, 1).numpy(), y.numpy())
            print(f"epoch {epoch + 1} t={time.perf_counter() - tick:.0f}s gca_ema={accuracy(*ema):.3f} "
                  f"gca_raw={raw_acc:.3f} ada_p={logs.get('ada_p', 0):.3f} ada_rt={logs.get('ada_rt', 0):.3f}",
                  flush=True)

    model.fit(train, callbacks=[Probe()])
    print(f"fit {time.perf_counter() - tick:.0f}s")


if __name__ == "__main__":
    main()
