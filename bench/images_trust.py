"""Images a person would recognise: the honest image benchmark (issue 18).

Runs the whole image pipeline as a user would - ``synthgen run`` with a code version's own
``params.images.yaml``, only the data folder, image size, seed and output folder set - on
three tiny image sets assembled offline, several seeds each, and scores every run with
the *current* library's :func:`synthgen.validation.images.image_report`, so that runs of
older code are judged by the same (honest) metrics: ``image_detection_auc`` (a classifier
two-sample test against the real holdout), ``fid_random`` (Fréchet distance in a fixed,
randomly initialised network: not trained on the train split), the judge's
``generated_class_accuracy`` and the real holdout's own values beside them.

``--code DIR`` runs the synthgen package found in DIR (an unpacked ``git archive`` of an
older commit) instead of this checkout: that is how "before" is measured in the same
session as "after". Each run appends one JSON line to ``--out`` and copies its sample grid
to ``--grids``; ``--summary`` prints the Markdown table of BENCHMARKS.md (mean ± sd).

Image sets (written once under ``--work``; nothing is downloaded):

    digits32  scikit-learn's bundled 8x8 digits (BSD-3-Clause), 40 per class (400),
              upscaled to 32 px with bilinear resampling
    photos32  2 classes of 32 px grayscale patches (100 each) cut at random places and
              scales from scikit-learn's two bundled sample photos, china.jpg and
              flower.jpg (their licence: see sklearn/datasets/images/README.txt), the
              shape of the issue's failing run (200 photos, 2 classes)
    shapes32  3 classes (circle, square, triangle; 100 each) drawn with PIL at random
              size, place, rotation and grey levels on a noisy background (ours)

Examples::

    git archive <before-commit> | tar -x -C /tmp/img-before
    python bench/images_trust.py --code /tmp/img-before --label before
    python bench/images_trust.py --label after
    python bench/images_trust.py --summary bench/results/images_trust.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
SETS = ("digits32", "photos32", "shapes32")


# -- the image sets ---------------------------------------------------------------------------
def _save(folder: Path, images: list[np.ndarray], labels: list[str]) -> None:
    from PIL import Image

    for i, (img, label) in enumerate(zip(images, labels)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / label / f"{i:05d}.png")


def _digits(rng: np.random.Generator) -> tuple[list[np.ndarray], list[str]]:
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    images, labels = [], []
    for c in range(10):
        for i in rng.choice(np.flatnonzero(d.target == c), 40, replace=False):
            img = Image.fromarray(np.round(d.images[i] * 255 / 16).astype(np.uint8))
            images.append(np.asarray(img.resize((SIZE, SIZE), Image.BILINEAR)))
            labels.append(str(c))
    return images, labels


def _photos(rng: np.random.Generator) -> tuple[list[np.ndarray], list[str]]:
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    images, labels = [], []
    for name, photo in zip(("china", "flower"), photos.images):
        gray = Image.fromarray(photo).convert("L")
        w, h = gray.size
        for _ in range(100):
            side = int(rng.integers(48, 129))
            x, y = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
            patch = gray.crop((x, y, x + side, y + side)).resize((SIZE, SIZE), Image.BILINEAR)
            images.append(np.asarray(patch))
            labels.append(name)
    return images, labels


def _shapes(rng: np.random.Generator) -> tuple[list[np.ndarray], list[str]]:
    from PIL import Image, ImageDraw

    images, labels = [], []
    scale = 4  # drawn at 4x, then downsampled: anti-aliased edges
    for name in ("circle", "square", "triangle"):
        for _ in range(100):
            bg = int(rng.integers(0, 90))
            img = Image.new("L", (SIZE * scale, SIZE * scale), bg)
            draw = ImageDraw.Draw(img)
            r = rng.uniform(7, 13) * scale
            cx, cy = (rng.uniform(r + 2 * scale, SIZE * scale - r - 2 * scale) for _ in range(2))
            fg = int(rng.integers(150, 256))
            if name == "circle":
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
            else:
                k = 4 if name == "square" else 3
                a0 = rng.uniform(0, 2 * np.pi)
                pts = [(cx + r * np.cos(a0 + 2 * np.pi * j / k), cy + r * np.sin(a0 + 2 * np.pi * j / k))
                       for j in range(k)]
                draw.polygon(pts, fill=fg)
            small = np.asarray(img.resize((SIZE, SIZE), Image.BILINEAR), dtype=np.float64)
            small = np.clip(small + rng.normal(0, 6, small.shape), 0, 255).astype(np.uint8)
            images.append(small)
            labels.append(name)
    return images, labels


def image_set(name: str, work: Path) -> Path:
    """Write image set ``name`` as a folder of class folders under ``work`` (once)."""
    folder = work / "sets" / name
    if not folder.exists():
        make = {"digits32": _digits, "photos32": _photos, "shapes32": _shapes}[name]
        images, labels = make(np.random.default_rng(0))
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        _save(tmp, images, labels)
        tmp.rename(folder)
    return folder


# -- one run, scored by this checkout ---------------------------------------------------------------
def run_one(name: str, seed: int, code: Path, label: str, work: Path, grids: Path, threads: int) -> dict[str, Any]:
    """``synthgen run`` with the code's own image params on one set; returns the numbers."""
    data = image_set(name, work)
    out = work / "runs" / f"{name}-seed{seed}-{label}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    sets = {"data.path": str(data), "data.image_size": SIZE, "model.seed": seed, "output.dir": str(out),
            "tracking.uri": f"sqlite:///{out}/mlflow.db"}
    cmd = [sys.executable, "-m", "synthgen.cli", "run", "--params", str(code / "params.images.yaml")]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (out / "run.log").write_text(proc.stdout + proc.stderr)
    if not (out / "synthetic" / "labels.csv").exists():
        return {"set": name, "seed": seed, "label": label, "error": (proc.stderr or proc.stdout)[-2000:]}
    row: dict[str, Any] = {"set": name, "seed": seed, "label": label, "wall_seconds": wall, "exit": proc.returncode,
                           "run_dir": str(out)}
    manifest = out / "manifest.json"
    if manifest.exists():
        row["train_seconds"] = json.loads(manifest.read_text()).get("train_seconds")
    grid = out / "synthetic_grid.png"
    if grid.exists():
        grids.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(grid, grids / f"{name}-{label}-seed{seed}.png")
    try:
        row.update(score(out, seed))
    except Exception as exc:  # scored again with --rescore
        row["score_error"] = repr(exc)
    return row


def score(run_dir: Path, seed: int) -> dict[str, Any]:
    """This checkout's image report of a run's synthetic folder against its splits."""
    sys.path.insert(0, str(ROOT))
    from synthgen.data.images import ImageSchema, load_images, read_image_folder
    from synthgen.validation.images import image_report

    schema = ImageSchema.load(run_dir / "schema.json")
    train = load_images(run_dir / "data" / "train.npz", "train split")
    holdout = load_images(run_dir / "data" / "holdout.npz", "holdout split")
    generated = read_image_folder(run_dir / "synthetic", schema.classes, schema.channels)
    t0 = time.perf_counter()
    found = image_report(train.images, train.labels, holdout.images, holdout.labels, generated.images,
                         generated.labels, seed=0, device="cpu")
    metrics, details = found["metrics"], found["details"]
    base = details.get("baseline", {})
    keep = ("image_detection_auc", "fid_random", "kid_random", "fid_pixel", "generated_class_accuracy",
            "real_accuracy", "fid_domain", "memorization_share", "exact_copy_rate")
    return {"score_seconds": time.perf_counter() - t0, **{k: metrics.get(k) for k in keep},
            "holdout": {k: base.get(k) for k in ("image_detection_auc", "fid_random", "fid_pixel", "fid_domain")},
            "metric_failures": [f.get("name") for f in details.get("metric_failures", [])]}


# -- summary -------------------------------------------------------------------------------------------
def summarize(path: Path) -> str:
    """Markdown: per set and label, mean ± sd over seeds."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if "error" in row:
            print(f"# failed run: {row['set']} {row['label']} seed {row['seed']}: {row['error'][-300:]}")
            continue
        groups.setdefault((row["set"], row["label"]), []).append(row)

    def stat(values: list[Any]) -> str:
        vals = [float(v) for v in values if v is not None]
        if not vals:
            return "-"
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        return f"{statistics.mean(vals):.3f} ± {sd:.3f}"

    lines = ["| set | code | seeds | image_detection_auc | fid_random (holdout's own) | generated_class_accuracy | "
             "train s (median) |", "|---|---|---|---|---|---|---|"]
    for (name, label), runs in sorted(groups.items()):
        hold = stat([r["holdout"].get("fid_random") for r in runs])
        train = [r["train_seconds"] for r in runs if r.get("train_seconds") is not None]
        lines.append(f"| {name} | {label} | {len(runs)} | {stat([r['image_detection_auc'] for r in runs])} | "
                     f"{stat([r['fid_random'] for r in runs])} ({hold}) | "
                     f"{stat([r['generated_class_accuracy'] for r in runs])} | "
                     f"{statistics.median(train) if train else float('nan'):.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(SETS), help="comma list of " + ", ".join(SETS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--code", type=Path, default=ROOT, help="folder whose synthgen package and params run")
    ap.add_argument("--label", default="after", help="name of this code version in the results")
    ap.add_argument("--work", type=Path, default=Path("/tmp/synthgen-images"))
    ap.add_argument("--threads", type=int, default=2, help="OMP/MKL threads of each run")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "images_trust.jsonl")
    ap.add_argument("--grids", type=Path, default=ROOT / "docs" / "images" / "bench")
    ap.add_argument("--summary", type=Path, default=None, help="print the table of a results file")
    ap.add_argument("--rescore", type=Path, default=None, help="score every run of a results file again")
    ap.add_argument("--make-sets", action="store_true", help="only write the image sets under --work")
    args = ap.parse_args(argv)
    if args.summary:
        print(summarize(args.summary))
        return
    if args.make_sets:
        for name in args.sets.split(","):
            print(image_set(name, args.work))
        return
    if args.rescore:
        rows = [json.loads(line) for line in args.rescore.read_text().splitlines() if line.strip()]
        for row in rows:
            if "error" not in row:
                row.pop("score_error", None)
                row.update(score(Path(row["run_dir"]), row["seed"]))
        args.rescore.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name in args.sets.split(","):
            row = run_one(name, seed, args.code.resolve(), args.label, args.work, args.grids, args.threads)
            with args.out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps({k: row.get(k) for k in ("set", "label", "seed", "image_detection_auc", "fid_random",
                                                       "generated_class_accuracy", "train_seconds", "error")}),
                  flush=True)


if __name__ == "__main__":
    main()
