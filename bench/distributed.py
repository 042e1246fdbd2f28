"""Throughput of torchrun training: 1 vs 2 CPU processes (gloo), ``tabular_gan`` rows/s and
``image_cgan`` images/s (issue 19).

Each measurement launches ``python -m torch.distributed.run --standalone
--nproc_per_node=N bench/distributed.py --worker KIND`` (a fresh process group per run);
the worker fits the family through its Python API inside
:func:`synthgen.training.distributed.session`, exactly as the train stage does, and rank 0
prints one JSON line: the fit's wall time (``train_seconds_``, preprocessing included) and
the real rows (images) the critic read, ``steps x model.batch_size x N``. Throughput is
that count over the fit time; the median of ``--repeats`` runs is reported.

* ``table``: ``tabular_gan`` with its family defaults on ``data/penguins.csv`` (275-row
  train split; the batch is capped at the rows, so each rank reads 275 rows a step),
  ``--table-epochs`` epochs of one step.
* ``image``: ``image_cgan`` with its family defaults on scikit-learn's 1,797 digits
  upscaled to 32 x 32, one epoch (56 steps of 32 images in one process, 28 per rank
  in two).

Configurations: 1 process with ``--threads`` torch threads (the whole box), 1 process with
1 thread, 2 processes with 1 thread each (what torchrun sets). On a 2-core box two
processes compete with each other and with anything else running, so this measures the
cost of the synchronisation more than any gain; a GPU figure needs a GPU.

Example (``--configs 1,2``: the two 1-thread configurations only)::

    .venv/bin/python bench/distributed.py --repeats 3 --configs 1,2 --json bench/results/distributed.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = (("1 process x 2 threads", 1, 2), ("1 process x 1 thread", 1, 1), ("2 processes x 1 thread", 2, 1))


def worker(kind: str, table_epochs: int) -> None:
    """Fit ``kind`` in this torchrun process; rank 0 prints ``{"seconds", "items", ...}``."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from synthgen.training.distributed import session

    with session("cpu") as group:
        if kind == "table":
            from synthgen.config import DataConfig, TabularModelConfig
            from synthgen.data.ingest import ingest
            from synthgen.synthesizers.tabular_gan.synthesizer import TabularGANSynthesizer

            schema, train, _ = ingest(DataConfig(path=str(ROOT / "data" / "penguins.csv"), target="species"))
            model = TabularGANSynthesizer(schema, TabularModelConfig(name="tabular_gan", epochs=table_epochs))
            model.fit(train)
            steps = table_epochs * max(1, len(train) // (model.batch_ * group.world_size))
        else:
            from synthgen.config import ImageModelConfig
            from synthgen.data.images import read_images
            from synthgen.data.sources import DIGITS
            from synthgen.synthesizers.image_cgan.synthesizer import ImageCGANSynthesizer

            data = read_images(DIGITS, 32)
            model = ImageCGANSynthesizer(ImageModelConfig(name="image_cgan", epochs=1, device="cpu"))
            model.fit(data)
            steps = max(1, len(data.labels) // (model.batch_ * group.world_size))
        items = steps * model.batch_ * group.world_size
        if group.is_main:
            print(json.dumps({"seconds": model.train_seconds_, "items": int(items), "steps": int(steps),
                              "batch": int(model.batch_), "world": group.world_size,
                              "threads": int(os.environ.get("OMP_NUM_THREADS", "0")), "numpy": np.__version__}))


def measure(kind: str, processes: int, threads: int, table_epochs: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "SYNTHGEN_PROGRESS": "log"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               str(Path(__file__).resolve()), "--worker", kind, "--table-epochs", str(table_epochs)]
    tick = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    if result.returncode:
        raise SystemExit(result.stderr[-3000:])
    row = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
    row["launch_seconds"] = time.perf_counter() - tick
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=("table", "image"), help=argparse.SUPPRESS)
    parser.add_argument("--kinds", default="table,image", help="table, image or both (comma list)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--table-epochs", type=int, default=300)
    parser.add_argument("--configs", default="0,1,2", help="which of CONFIGS to run, by index (comma list)")
    parser.add_argument("--json", type=Path, default=None, help="write every run here")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.table_epochs)
        return
    configs = [CONFIGS[int(i)] for i in args.configs.split(",")]
    runs = []
    for kind in args.kinds.split(","):
        unit = "rows/s" if kind == "table" else "images/s"
        for _ in range(args.repeats):  # interleaved, so background load hits every configuration alike
            for label, processes, threads in configs:
                row = measure(kind, processes, threads, args.table_epochs)
                row.update(kind=kind, config=label, rate=row["items"] / row["seconds"])
                runs.append(row)
                print(f"{kind:5s} {label:24s} {row['rate']:9.0f} {unit}  fit {row['seconds']:.1f}s "
                      f"({row['steps']} steps x {row['batch']} x {row['world']})", flush=True)
        for label, _, _ in configs:
            rates = [r["rate"] for r in runs if r["kind"] == kind and r["config"] == label]
            print(f"median {kind:5s} {label:24s} {statistics.median(rates):9.0f} {unit} "
                  f"(runs: {', '.join(f'{r:.0f}' for r in rates)})")
    if args.json:
        args.json.write_text(json.dumps({"cpus": os.cpu_count(), "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
