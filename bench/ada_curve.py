"""ADA on a tiny image set: the measured curve of ``p`` and ``r_t`` (issue 18).

Trains ``image_cgan`` through ``synthgen run`` (the code's own ``params.images.yaml``,
32 px) on a small subset of the digits32 set of :mod:`images_trust` (``--per-class``
images per class, default 6: 60 images, 48 in the train split) once per discriminator
augmentation mode (``ada``, ``diffaugment``, ``none``), all with the same seed. Writes:

- ``bench/results/ada_curve.csv``: the ADA run's ``ada.csv`` (``step, ada_p, ada_rt`` at
  every adjustment), the curve itself;
- ``bench/results/ada_curve.jsonl``: one line per mode with the honest image metrics of
  :func:`images_trust.score` (detection AUC, random-feature FID, class accuracy);
- ``docs/images/bench/ada-curve.png``: ``p`` and ``r_t`` over steps, the target beside them,
  and each mode's sample grid under ``docs/images/bench/ada-<mode>.png``.

``--code DIR`` runs the synthgen package and params of DIR (an unpacked ``git archive``).

Example::

    python bench/ada_curve.py --per-class 6 --seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from images_trust import ROOT, SIZE, image_set, score  # noqa: E402

MODES = ("ada", "diffaugment", "none")


def subset(work: Path, per_class: int) -> Path:
    """The first ``per_class`` images of each digit of digits32, as a new folder (once)."""
    folder = work / "sets" / f"digits32-{per_class}pc"
    if not folder.exists():
        source = image_set("digits32", work)
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for klass in sorted(p for p in source.iterdir() if p.is_dir()):
            (tmp / klass.name).mkdir(parents=True)
            for image in sorted(klass.iterdir())[:per_class]:
                shutil.copyfile(image, tmp / klass.name / image.name)
        tmp.rename(folder)
    return folder


def run_mode(mode: str, data: Path, seed: int, work: Path, threads: int, code: Path) -> Path:
    out = work / "runs" / f"ada-curve-{mode}-seed{seed}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    sets = {"data.path": str(data), "data.image_size": SIZE, "model.seed": seed, "model.disc_augment": mode,
            "output.dir": str(out), "tracking.uri": "null"}
    cmd = [sys.executable, "-m", "synthgen.cli", "run", "--params", str(code / "params.images.yaml")]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True)
    (out / "run.log").write_text(proc.stdout + proc.stderr)
    if not (out / "synthetic" / "labels.csv").exists():
        raise SystemExit(f"{mode}: the run failed; see {out / 'run.log'}")
    return out


def plot(curve: pd.DataFrame, target: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(curve["step"], curve["ada_rt"], color="#4c72b0", lw=1, label="r_t (overfitting heuristic)")
    ax.axhline(target, color="#4c72b0", ls=":", lw=1, label=f"target {target}")
    ax.plot(curve["step"], curve["ada_p"], color="#c44e52", lw=2, label="p (augmentation probability)")
    ax.set_xlabel("generator step")
    ax.set_ylim(-1.05, 1.05)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("ADA on 48 training images (digits, 32 px)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--work", type=Path, default=Path("/tmp/synthgen-images"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--code", type=Path, default=ROOT, help="folder whose synthgen package and params run")
    args = ap.parse_args(argv)
    data = subset(args.work, args.per_class)
    results = ROOT / "bench" / "results"
    docs = ROOT / "docs" / "images" / "bench"
    for mode in args.modes.split(","):
        began = time.perf_counter()
        out = run_mode(mode, data, args.seed, args.work, args.threads, args.code.resolve())
        row = {"mode": mode, "seed": args.seed, "per_class": args.per_class, "wall_seconds": time.perf_counter() - began,
               **score(out, args.seed)}
        with (results / "ada_curve.jsonl").open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        shutil.copyfile(out / "synthetic_grid.png", docs / f"ada-{mode}.png")
        if mode == "ada":
            curve = pd.read_csv(out / "ada.csv")
            curve.to_csv(results / "ada_curve.csv", index=False)
            target = json.loads((out / "model" / "params.json").read_text())["model"].get("ada_target", 0.6)
            plot(curve, target, docs / "ada-curve.png")
            print(f"ada: p {curve['ada_p'].iloc[0]:.3f} -> {curve['ada_p'].iloc[-1]:.3f} (max {curve['ada_p'].max():.3f}); "
                  f"r_t last 10: {curve['ada_rt'].tail(10).mean():.3f}", flush=True)
        print(json.dumps({k: row.get(k) for k in ("mode", "image_detection_auc", "fid_random",
                                                   "generated_class_accuracy", "wall_seconds")}), flush=True)


if __name__ == "__main__":
    main()
