"""Memory: a 100k-row table with a 10,000-level categorical, trained by ``tabular_gan``.

The issue's target: such a table trains within 4 GB resident memory. The table is
synthetic (built here, seeded): a categorical ``code`` with exactly 10,000 levels
(every level present, frequencies Zipf-like), a 4-level categorical ``kind`` and three
numeric columns (one depending on ``code``). Each configuration runs in its own
subprocess (so ``ru_maxrss`` - the peak resident set of that process, imports, data,
preprocessing, networks, optimizer state and training included - belongs to it alone)
and trains for ``--steps`` generator steps (critic + generator updates; training is
stopped after that many), reporting peak RSS and the median / mean time per step after
the first (warm-up) step:

* ``pooled``: ``max_categories=500`` (the default: rarer levels pooled into one);
* ``wide``: ``max_categories=10001`` (all 10,000 levels kept), the engine's wide mode
  (condition embedding in the generator, lookup critic);
* ``dense``: the same, wide mode switched off (``wide_min_levels`` huge) - the dense
  one-hot path every level goes through otherwise.

Example::

    .venv/bin/python bench/memory.py --threads 1 --steps 20 --json /tmp/memory.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

CONFIGS = {
    "pooled": {"max_categories": 500, "options": {}},
    "wide": {"max_categories": 10001, "options": {}},
    "dense": {"max_categories": 10001, "options": {"wide_min_levels": 10**9}},
}


def build_table(rows: int, levels: int, seed: int = 0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, levels + 1) ** 0.8
    codes = np.concatenate([np.arange(levels), rng.choice(levels, rows - levels, p=weights / weights.sum())])
    rng.shuffle(codes)
    x = rng.normal(size=rows)
    return pd.DataFrame({
        "code": pd.Series([f"L{c:05d}" for c in codes]),
        "kind": rng.choice(["a", "b", "c", "d"], rows, p=[0.4, 0.3, 0.2, 0.1]),
        "x": x,
        "y": 2 * x + rng.normal(0, 0.5, rows) + (codes % 7),
        "amount": rng.lognormal(3, 1, rows).round(2),
    })


class _Stop(Exception):
    pass


def run_one(name: str, rows: int, levels: int, steps: int, epochs_cap: int) -> dict[str, Any]:
    """Train one configuration in this process; return its numbers."""
    import torch

    from synthgen.config import ModelConfig
    from synthgen.data.schema import conform, infer_schema
    from synthgen.synthesizers import tabular_gan as tg

    spec = CONFIGS[name]
    tick = time.perf_counter()
    df = build_table(rows, levels)
    schema = infer_schema(df)
    schema["code"].kind = "categorical"
    df = conform(df, schema)
    build_s = time.perf_counter() - tick
    stamps: list[float] = []
    original = tg.TabularGANLoss.generator_loss

    def counted(self, step):  # one generator step closes one training step
        stamps.append(time.perf_counter())
        if len(stamps) > steps:
            raise _Stop
        return original(self, step)

    tg.TabularGANLoss.generator_loss = counted
    model = tg.TabularGANSynthesizer(schema, ModelConfig(name="tabular_gan", epochs=epochs_cap, seed=0),
                                     max_categories=spec["max_categories"])
    for key, value in spec["options"].items():
        setattr(model.options, key, value)
    start = time.perf_counter()
    try:
        model.fit(df)
    except _Stop:
        pass
    fit_s = time.perf_counter() - start
    per_step = [b - a for a, b in zip(stamps[:-1], stamps[1:])][1:]  # drop the first (warm-up)
    norm = model.normalizer_
    return {
        "config": name, "rows": rows, "levels_in_table": int(df["code"].nunique()),
        "max_categories": spec["max_categories"], "cond_width": int(norm.cond_width), "width": int(norm.width),
        "wide_mode": bool(norm.cond_width >= model.options.wide_min_levels), "steps": len(stamps) - 1,
        "threads": torch.get_num_threads(), "build_table_s": build_s, "fit_s_until_stop": fit_s,
        "step_s_median": statistics.median(per_step) if per_step else float("nan"),
        "step_s_mean": statistics.mean(per_step) if per_step else float("nan"),
        "step_s_sd": statistics.stdev(per_step) if len(per_step) > 1 else 0.0,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--levels", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=20, help="training steps per configuration")
    ap.add_argument("--dense-steps", type=int, default=5, help="steps for the (slow) dense configuration")
    ap.add_argument("--configs", default="pooled,wide,dense")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        steps = args.dense_steps if args.child == "dense" else args.steps
        print(json.dumps(run_one(args.child, args.rows, args.levels, steps, epochs_cap=1000)))
        return []
    results = []
    for name in args.configs.split(","):
        cmd = [sys.executable, __file__, "--child", name, "--rows", str(args.rows), "--levels", str(args.levels),
               "--steps", str(args.steps), "--dense-steps", str(args.dense_steps), "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(res)
        print(f"{name:7s} cond width {res['cond_width']:6d}  wide={res['wide_mode']!s:5s} steps {res['steps']:3d}  "
              f"step {res['step_s_median']:.3f} s median ({res['step_s_mean']:.3f} ± {res['step_s_sd']:.3f})  "
              f"peak RSS {res['peak_rss_mib']:.0f} MiB", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return results


if __name__ == "__main__":
    main()
