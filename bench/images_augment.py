"""Augmentation on little data: image_cgan with none vs DiffAugment vs ADA on 10% of the digits.

The digits (scikit-learn's bundled 8 x 8 set) are split once (20% holdout, seed 0); a
stratified ``--fraction`` of the train split (seed 0, the same for every run) is what
the GANs train on. Each mode is trained for the same number of optimizer steps for
every seed, then ``--n-generated`` images are scored with
:func:`synthgen.validation.images.image_report` against the *full* train split (the
judge is trained on it and it is the FID reference, so the score says how close the
generator came to the whole distribution, not only to the images it saw) and the
untouched holdout. One judge (:func:`~synthgen.validation.images.fit_judge`, seed 0) is
fitted once and scores every run, so the feature-space figures are comparable. Modes
run interleaved per seed, so background load hits them alike.

    .venv/bin/python bench/images_augment.py --seeds 3 --threads 1 --json /tmp/images_augment.json

or split over two cores and merged:

    .venv/bin/python bench/images_augment.py --seeds 2 --json /tmp/ia0.json &
    .venv/bin/python bench/images_augment.py --seeds 2 --first-seed 2 --json /tmp/ia2.json; wait
    .venv/bin/python bench/images_augment.py --merge /tmp/ia0.json /tmp/ia2.json

Prints a Markdown table (``fid_domain``, ``kid_domain``, ``generated_class_accuracy``,
final ADA ``p``: mean +- sample sd over seeds) for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch


def _stratified(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keep = [rng.choice(idx, max(2, int(round(len(idx) * fraction))), replace=False)
            for idx in (np.flatnonzero(labels == c) for c in np.unique(labels))]
    return np.sort(np.concatenate(keep))


def run(args: argparse.Namespace) -> list[dict]:
    from synthgen.config import ImageModelConfig
    from synthgen.data.images import DIGITS, read_images, split_images
    from synthgen.synthesizers.image_cgan import ImageCGANSynthesizer
    from synthgen.validation.images import fit_judge, image_report

    data = read_images(DIGITS, args.size)
    train, holdout = split_images(data, 0.2, seed=0)
    small = train.subset(_stratified(train.labels, args.fraction, seed=0))
    steps_per_epoch = max(1, len(small) // min(args.batch, len(small)))
    epochs = max(1, args.steps // steps_per_epoch)
    print(f"train on {len(small)} of {len(train)} train images ({args.size}px), {epochs} epochs x "
          f"{steps_per_epoch} steps, holdout {len(holdout)}", flush=True)
    judge = fit_judge(train.images, train.labels, seed=0)  # one judge scores every run: comparable figures
    print(f"judge fitted in {judge.seconds:.0f}s", flush=True)
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for mode in args.modes:
            cfg = ImageModelConfig(name="image_cgan", epochs=epochs, batch_size=args.batch, device="cpu", seed=seed,
                              generator_dim=[args.width], discriminator_dim=[args.d_width or args.width],
                              disc_augment=mode,
                              ada_kimg=args.ada_kimg, ada_orientation=not args.ada_no_orientation, ema=args.ema,
                              lr=args.lr)
            tick = time.perf_counter()
            model = ImageCGANSynthesizer(cfg)
            model.options.critic_steps, model.options.lr_d_mult = args.critic_steps, args.lr_d_mult
            model.fit(small)
            fit_s = time.perf_counter() - tick
            gen = model.sample(args.n_generated, seed=1000 + seed)
            report = image_report(train.images, train.labels, holdout.images, holdout.labels, gen.images,
                                  gen.labels, seed=0, judge=judge)
            m = report["metrics"]
            row = {"mode": mode, "seed": seed, "fit_seconds": fit_s, "ada_p": float(model.augment_.p),
                   "ada_rt": float(model.augment_.rt),
                   **{k: m[k] for k in ("fid_domain", "kid_domain", "generated_class_accuracy", "tstr_accuracy",
                                        "precision", "recall", "coverage")},
                   "baseline_fid_domain": report["details"]["baseline"]["fid_domain"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def _ms(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def table(rows: list[dict], modes: list[str]) -> str:
    lines = ["| augment | fid_domain | kid_domain | generated_class_accuracy | tstr_accuracy | ADA p (end) | fit s |",
             "|---|---|---|---|---|---|---|"]
    for mode in modes:
        sel = [r for r in rows if r["mode"] == mode]
        lines.append(f"| {mode} | {_ms([r['fid_domain'] for r in sel])} | {_ms([r['kid_domain'] for r in sel])} | "
                     f"{_ms([r['generated_class_accuracy'] for r in sel])} | {_ms([r['tstr_accuracy'] for r in sel])} | "
                     f"{_ms([r['ada_p'] for r in sel])} | {_ms([r['fit_seconds'] for r in sel])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=0.1, help="share of the train split trained on (0.1)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1 "
                        "(split seeds over processes, then --merge their --json files)")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                        help="print the table of runs saved by earlier --json runs, and exit")
    parser.add_argument("--modes", nargs="+", default=["none", "diffaugment", "ada"])
    parser.add_argument("--size", type=int, default=8, help="image side in pixels (8 = the digits' own)")
    parser.add_argument("--steps", type=int, default=800, help="optimizer steps per run (800)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--width", type=int, default=32, help="base width of both networks (32)")
    parser.add_argument("--d-width", type=int, default=None, help="discriminator width (default: --width)")
    parser.add_argument("--critic-steps", type=int, default=1, help="D updates per G update (1)")
    parser.add_argument("--lr-d-mult", type=float, default=1.0, help="D learning rate = lr x this (1)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of both networks (1e-3)")
    parser.add_argument("--ada-kimg", type=float, default=20.0)
    parser.add_argument("--ada-no-orientation", action="store_true",
                        help="ADA without x-flips and rotations (model.ada_orientation: false)")
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--n-generated", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write every run's figures here")
    args = parser.parse_args()
    if args.merge:
        rows = [row for path in args.merge for row in json.load(open(path))["runs"]]
        print(table(rows, args.modes))
        print(f"baseline (holdout scored as if generated): fid_domain {rows[0]['baseline_fid_domain']:.3f}")
        return
    torch.set_num_threads(args.threads)
    tick = time.perf_counter()
    rows = run(args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "runs": rows}, fh, indent=2)
    print(table(rows, args.modes))
    print(f"baseline (holdout scored as if generated): fid_domain {rows[0]['baseline_fid_domain']:.3f}")
    print(f"total {time.perf_counter() - tick:.0f}s")


if __name__ == "__main__":
    main()
