"""Bounded memory (issue 16): peak resident memory of validating and of sampling.

Two workloads, each measured in a fresh child process (its peak RSS, ``ru_maxrss`` from
``os.wait4`` - the ``getrusage(RUSAGE_CHILDREN)`` figure of a parent with that one child:
imports, data, encodings, models and the result all count):

* ``validate``: :func:`synthgen.validation.verdict.validate_synthetic` (fidelity, GX,
  detection, utility, privacy) of a synthetic table of ``--rows`` rows against a real
  train split of ``--rows`` rows and a holdout of ``--rows / 4``, built here (seeded): a
  categorical ``code`` with ``--levels`` levels (every level present in the train split,
  Zipf-like frequencies), a 4-level categorical ``kind`` (the utility target) and three
  numbers; the synthetic table is another draw of the same distribution.
* ``sample``: a small ``tabular_gan`` (default sizes) trained for one epoch on 5,000 rows
  (a 30-level categorical, a boolean, an integer and two numbers; trained and saved by
  the same code version in its own child, not measured), then in fresh children:
  ``sample-lib`` - ``load(model).sample(--sample-rows, seed=0)``, the frame in memory;
  ``sample-cli`` - ``synthgen sample --rows N --out FILE.parquet`` (the CLI as a user runs
  it); ``sample-stream`` - ``sample_to_file(..., keep=False)`` (only where the code has it).

A watchdog polls each child's RSS and kills it past ``--cap-gib`` (default 12, to spare
the other processes of a shared 24 GB machine) or after ``--timeout`` seconds; the row
then says ``"killed"``, and its ``peak_rss_gib`` is the last RSS seen (a lower bound). As
a hard stop, each child's address space is limited to the cap plus 4 GiB (an allocation
beyond it fails in the child, which then exits with an error). ``--code DIR`` runs the synthgen package found in DIR (an
unpacked ``git archive`` of an older commit) instead of this checkout's, so the code
before a change is measured the same way. Threads: ``--threads`` (default 1) for torch,
BLAS and OpenMP in every child.

Example::

    .venv/bin/python bench/bounded_memory.py --label after
    git archive <commit> | tar -x -C /tmp/mem-before
    .venv/bin/python bench/bounded_memory.py --code /tmp/mem-before --label before \\
        --tasks validate --rows 50000 --levels 5000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30


def build_table(rows: int, levels: int, seed: int):
    """The validation table: ``code`` (``levels`` levels, each present when rows allow),
    ``kind`` (4 levels), ``x``, ``y`` (depends on x and code), ``amount``."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, levels + 1) ** 0.8
    every = np.arange(min(levels, rows))
    codes = np.concatenate([every, rng.choice(levels, rows - len(every), p=weights / weights.sum())])
    rng.shuffle(codes)
    x = rng.normal(size=rows)
    return pd.DataFrame({
        "code": pd.Series([f"L{c:05d}" for c in codes], dtype=object),
        "kind": rng.choice(["a", "b", "c", "d"], rows, p=[0.4, 0.3, 0.2, 0.1]),
        "x": x,
        "y": 2 * x + rng.normal(0, 0.5, rows) + (codes % 7),
        "amount": rng.lognormal(3, 1, rows).round(2),
    })


def small_table(rows: int, seed: int = 0):
    """The sampling model's training table."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    return pd.DataFrame({
        "cat": rng.choice([f"c{i:02d}" for i in range(30)], rows),
        "flag": rng.random(rows) < 0.3,
        "n": rng.integers(0, 100, rows),
        "x": x,
        "y": 3 * x + rng.normal(size=rows),
    })


# -- the children ---------------------------------------------------------------------------------
def child_validate(args: argparse.Namespace) -> dict[str, Any]:
    from synthgen.config import ValidateConfig
    from synthgen.data.schema import conform, infer_schema
    from synthgen.validation.verdict import validate_synthetic

    train = build_table(args.rows, args.levels, 0)
    schema = infer_schema(train, target="kind")
    schema["code"].kind = "categorical"
    train = conform(train, schema)
    synthetic = conform(build_table(args.rows, args.levels, 1), schema)
    holdout = conform(build_table(max(args.rows // 4, 10), args.levels, 2), schema)
    start = time.perf_counter()
    verdict, _ = validate_synthetic(train, synthetic, schema, ValidateConfig(), holdout=holdout, target="kind")
    return {"seconds": time.perf_counter() - start, "quality_score": verdict["metrics"]["quality_score"],
            "detection_auc": verdict["metrics"]["detection_auc"],
            "dcr_synthetic_median": verdict["metrics"]["dcr_synthetic_median"]}


def child_train(args: argparse.Namespace) -> dict[str, Any]:
    from synthgen.config import ModelConfig
    from synthgen.data.schema import conform, infer_schema
    from synthgen.synthesizers import REGISTRY

    table = small_table(5000)
    schema = infer_schema(table)
    table = conform(table, schema)
    model = REGISTRY["tabular_gan"](schema, ModelConfig(name="tabular_gan", epochs=1, seed=0)).fit(table)
    model.save(args.model)
    return {"model": str(args.model)}


def child_sample_lib(args: argparse.Namespace) -> dict[str, Any]:
    from synthgen.synthesizers import load

    model = load(args.model)
    start = time.perf_counter()
    frame = model.sample(args.sample_rows, seed=0)
    return {"seconds": time.perf_counter() - start, "rows": len(frame)}


def child_sample_stream(args: argparse.Namespace) -> dict[str, Any]:
    import inspect

    from synthgen.consume import sample_to_file

    if "keep" not in inspect.signature(sample_to_file).parameters:
        return {"skipped": "this code has no sample_to_file(keep=False)"}
    start = time.perf_counter()
    frame = sample_to_file(args.model, args.sample_rows, args.out, seed=0, allow_unvalidated=True, keep=False)
    return {"seconds": time.perf_counter() - start, "rows": frame.attrs["rows"]}


CHILDREN = {"validate": child_validate, "train": child_train, "sample-lib": child_sample_lib,
            "sample-stream": child_sample_stream}


# -- the parent ---------------------------------------------------------------------------------
def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measure(cmd: list[str], env: dict[str, str], cap: float, timeout: float, cwd: Path) -> dict[str, Any]:
    """Run ``cmd`` in ``cwd`` (not the checkout: ``python -m`` would import its synthgen
    before ``PYTHONPATH``'s); its peak RSS (wait4), wall time, exit, and whether the
    watchdog killed it."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        limit = int((cap + 4) * GIB)
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
        seen, killed = 0, None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            seen = max(seen, _rss(proc.pid))
            if seen > cap * GIB or time.perf_counter() - start > timeout:
                killed = f"over {cap:g} GiB RSS" if seen > cap * GIB else f"over {timeout:g} s"
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    row: dict[str, Any] = {"exit": proc.returncode, "wall_s": round(time.perf_counter() - start, 1),
                           "peak_rss_gib": round(max(usage.ru_maxrss * 1024, seen) / GIB, 3)}
    if killed:
        row["killed"] = killed
    lines = [line for line in text.splitlines() if line.startswith("{")]
    if lines and not killed:
        row.update(json.loads(lines[-1]))
    elif proc.returncode and not killed:
        row["error"] = text.strip().splitlines()[-1][:300] if text.strip() else "no output"
    return row


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="validate,sample-lib,sample-cli,sample-stream")
    ap.add_argument("--rows", type=int, default=200_000, help="validate: train and synthetic rows")
    ap.add_argument("--levels", type=int, default=20_000, help="validate: levels of the categorical")
    ap.add_argument("--sample-rows", type=int, default=5_000_000)
    ap.add_argument("--code", type=Path, default=ROOT, help="folder whose synthgen package runs")
    ap.add_argument("--label", default="after")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cap-gib", type=float, default=12.0)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--work", type=Path, default=None, help="where the model and files go (default a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="append one JSON line per measurement")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(CHILDREN[args.child](args)))
        return []
    code = args.code.resolve()
    threads = str(args.threads)
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
           "OPENBLAS_NUM_THREADS": threads, "MLFLOW_DISABLE_TELEMETRY": "true", "GX_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1"}
    work = Path(args.work or tempfile.mkdtemp(prefix="synthgen-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    model = work / f"model-{args.label}"
    base = [sys.executable, str(Path(__file__).resolve()), "--threads", threads, "--model", str(model)]
    tasks = args.tasks.split(",")
    results = []
    if any(t.startswith("sample") for t in tasks):
        trained = measure([*base, "--child", "train"], env, args.cap_gib, args.timeout, work)
        if trained["exit"]:
            raise SystemExit(f"training the sampling model failed: {trained}")
    for task in tasks:
        if task == "validate":
            cmd = [*base, "--child", "validate", "--rows", str(args.rows), "--levels", str(args.levels)]
            size = {"rows": args.rows, "levels": args.levels}
        elif task == "sample-cli":
            out = work / f"cli-{args.label}.parquet"
            cmd = [sys.executable, "-m", "synthgen.cli", "sample", "--model", str(model), "--rows",
                   str(args.sample_rows), "--seed", "0", "--out", str(out), "--allow-unvalidated"]
            size = {"rows": args.sample_rows}
        else:
            out = work / f"{task}-{args.label}.parquet"
            cmd = [*base, "--child", task, "--sample-rows", str(args.sample_rows), "--out", str(out)]
            size = {"rows": args.sample_rows}
        row = {"task": task, "label": args.label, **size, "threads": args.threads,
               **measure(cmd, env, args.cap_gib, args.timeout, work)}
        results.append(row)
        print(json.dumps(row), flush=True)
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    return results


if __name__ == "__main__":
    main()
