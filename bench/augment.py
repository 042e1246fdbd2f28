"""Data for the augmentation benchmark (BENCHMARKS.md, "Augmentation benefit").

The measurement itself is the augment flow (``pipelines/augment_flow.py``); this script
only writes the second, derived table it runs on:

``--breast-cancer PATH`` writes an *imbalanced derivative* of scikit-learn's bundled
Wisconsin Diagnostic Breast Cancer data (569 rows, 30 numeric features; UCI ML
repository, CC BY 4.0; shipped with scikit-learn, BSD-3-Clause): all 357 benign rows
and a seeded subsample of ``--malignant`` (default 40) of the 212 malignant rows, so
the minority class is about 10%. The target column is ``diagnosis``
(``benign`` / ``malignant``). Nothing is downloaded.

``--digits PATH.npz`` writes an *imbalanced derivative* of scikit-learn's bundled 8x8
digits (1,797 images, 10 classes; UCI ML repository, CC BY 4.0; shipped with
scikit-learn, BSD-3-Clause): every image of every class except ``--digit`` (default 8),
of which a seeded ``--keep`` (default 18, about 10% of a class; BENCHMARKS uses 40) stay. It is an ``.npz``
with ``images`` and ``labels``, the image ingest's input (``data.path``).

``--table BENEFIT_JSON`` prints the per-model summary of an augment run's
``augment/benefit.json`` as a Markdown table (the form BENCHMARKS.md quotes).

``--merge BENEFIT_JSON ...`` pools the repeats of several augment runs that differ only
in the GAN's training seed (``model.seed``), so the spread covers the trained model as
well as the synthetic draw and the downstream seed: the same table over every (GAN,
repeat) pair, then the lift of each GAN averaged over its repeats.

Examples::

    .venv/bin/python bench/augment.py --breast-cancer /tmp/bc_imbalanced.csv --malignant 40 --seed 0
    .venv/bin/python bench/augment.py --table outputs/augment-penguins/augment/benefit.json
    .venv/bin/python bench/augment.py --digits /tmp/digits_imbalanced.npz --digit 8 --keep 18
    .venv/bin/python bench/augment.py --merge /tmp/augpen/s*/augment/benefit.json
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd


def breast_cancer_imbalanced(malignant: int = 40, seed: int = 0) -> pd.DataFrame:
    """All benign rows plus ``malignant`` seeded malignant rows, in the original order."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns=lambda c: c.replace(" ", "_"))
    frame["diagnosis"] = np.where(frame.pop("target") == 1, "benign", "malignant")
    rng = np.random.default_rng(seed)
    sick = np.flatnonzero(frame["diagnosis"] == "malignant")
    keep = np.sort(np.concatenate([np.flatnonzero(frame["diagnosis"] == "benign"),
                                   rng.choice(sick, malignant, replace=False)]))
    return frame.iloc[keep].reset_index(drop=True)


def digits_imbalanced(digit: int = 8, keep: int = 18, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images N x 8 x 8 uint8, labels): all digits, but only ``keep`` seeded images of ``digit``."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.clip(np.rint(data.images * 255 / 16), 0, 255).astype(np.uint8)
    rng = np.random.default_rng(seed)
    rare = np.flatnonzero(data.target == digit)
    index = np.sort(np.concatenate([np.flatnonzero(data.target != digit), rng.choice(rare, keep, replace=False)]))
    return images[index], data.target[index]


def markdown_table(benefit: dict) -> str:
    """Per model and metric: each arm's mean ± sd, and the lift's mean ± sd [min, max]."""
    def pm(s: dict) -> str:
        return f"{s['mean']:.3f} ± {s['sd']:.3f}"

    lines = ["| model | metric | real | augmented | reweighted | lift (aug − real) mean ± sd [min, max] |"
             " aug − reweighted |", "|---|---|---|---|---|---|---|"]
    for model, metrics in benefit["models"].items():
        for metric, s in metrics.items():
            lift = s["lift"]
            lines.append(f"| {model} | {metric} | {pm(s['real'])} | {pm(s['augmented'])} | {pm(s['reweighted'])} "
                         f"| {lift['mean']:+.3f} ± {lift['sd']:.3f} [{lift['min']:+.3f}, {lift['max']:+.3f}] "
                         f"| {s['lift_vs_reweighted']['mean']:+.3f} |")
    for metric, s in benefit["overall"].items():
        lift = s["lift"]
        lines.append(f"| mean of models | {metric} | | | | {lift['mean']:+.3f} ± {lift['sd']:.3f} "
                     f"[{lift['min']:+.3f}, {lift['max']:+.3f}] | |")
    return "\n".join(lines)


def merge_benefits(benefits: list[dict]) -> tuple[dict, list[dict]]:
    """Pool the repeats of runs with different GAN seeds into one summary (synthgen's own
    :func:`~synthgen.validation.benefit.summarize`), and each run's own overall lift."""
    from synthgen.validation.benefit import summarize

    models = benefits[0]["protocol"]["models"]
    if any(b["protocol"]["models"] != models for b in benefits):
        raise SystemExit("--merge: the runs used different downstream models")
    records = [{**r, "seed": (run, r["seed"])} for run, b in enumerate(benefits) for r in b["records"]]
    return summarize(records, models), [b["overall"] for b in benefits]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--breast-cancer", metavar="PATH", help="CSV to write")
    parser.add_argument("--table", metavar="BENEFIT_JSON", help="print benefit.json as a Markdown table")
    parser.add_argument("--merge", nargs="+", metavar="BENEFIT_JSON", help="pool runs with different GAN seeds")
    parser.add_argument("--malignant", type=int, default=40, help="malignant rows kept (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsample (default 0)")
    parser.add_argument("--digits", metavar="PATH", help="imbalanced digits .npz to write")
    parser.add_argument("--digit", type=int, default=8, help="the rare digit (default 8)")
    parser.add_argument("--keep", type=int, default=18, help="images of the rare digit kept (default 18)")
    args = parser.parse_args()
    if args.digits:
        images, labels = digits_imbalanced(args.digit, args.keep, args.seed)
        np.savez(args.digits, images=images, labels=labels)
        print(f"{args.digits}: {len(images)} images; digit {args.digit}: {args.keep} "
              f"({args.keep / len(images):.1%})")
    if args.table:
        import json
        from pathlib import Path

        print(markdown_table(json.loads(Path(args.table).read_text())))
    if args.merge:
        import json
        from pathlib import Path

        pooled, per_run = merge_benefits([json.loads(Path(p).read_text()) for p in args.merge])
        print(f"{len(args.merge)} runs (GAN seeds), every (GAN, repeat) pair pooled:\n")
        print(markdown_table(pooled))
        print("\nlift (aug − real) of each run, mean of models over its repeats:\n")
        print("| run | " + " | ".join(pooled["overall"]) + " |\n|---|" + "---|" * len(pooled["overall"]))
        for path, overall in zip(args.merge, per_run):
            print(f"| {path} | " + " | ".join(f"{overall[m]['lift']['mean']:+.3f}" for m in pooled["overall"]) + " |")
    if not args.breast_cancer:
        return
    frame = breast_cancer_imbalanced(args.malignant, args.seed)
    frame.to_csv(args.breast_cancer, index=False)
    counts = frame["diagnosis"].value_counts()
    print(f"{args.breast_cancer}: {len(frame)} rows; {counts.to_dict()}; "
          f"minority {counts.min() / len(frame):.1%}")


if __name__ == "__main__":
    main()
