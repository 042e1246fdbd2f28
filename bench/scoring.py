"""Time to score a synthetic table: fidelity, detection, utility and privacy (a benchmark).

The real table is **generated, for timing only** (or read with ``--data`` and
resampled with noise to ``--rows``): 15 mixed columns (7 continuous, 2 integer, 1
datetime, 3 categorical, 1 boolean, and the categorical target), dependent on each
other, a few percent missing in two columns. It is split into a train table of
``--rows`` rows and a holdout of a quarter of that; the "synthetic" table (``--rows``
rows) is the train table resampled with replacement, 5%-of-sd Gaussian noise on
numbers and 5% of categories redrawn - an imperfect, somewhat leaky generator.

Each part is timed as :func:`synthgen.validation.verdict.validate_synthetic` runs it
(same defaults); privacy is broken down per metric. ``--gx`` also times the Great
Expectations suite (its import alone takes seconds).

Examples::

    .venv/bin/python bench/scoring.py                       # 50k x 15, the issue's budget: < 60 s
    .venv/bin/python bench/scoring.py --rows 10000 --gx
    .venv/bin/python bench/scoring.py --data data/penguins.csv --target species
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from synthgen.data.schema import conform, infer_schema


def generated(n: int, seed: int = 0) -> pd.DataFrame:
    """A mixed 15-column table with dependence between columns (timing data)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    num = {f"num{i}": z @ rng.normal(size=3) + rng.normal(scale=0.5, size=n) for i in range(7)}
    frame = pd.DataFrame(num)
    frame["count"] = rng.poisson(np.exp(1 + 0.5 * z[:, 0]))
    frame["age"] = np.clip(np.round(45 + 12 * z[:, 1]), 18, 90).astype(int)
    frame["date"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1500, n) + (z[:, 2] * 60).astype(int), "D")
    frame["region"] = np.array(list("ABCDEFGH"))[np.clip((z[:, 0] * 2 + 4).astype(int), 0, 7)]
    frame["plan"] = rng.choice(["basic", "plus", "pro", "team", "enterprise"], n, p=[0.4, 0.3, 0.15, 0.1, 0.05])
    frame["channel"] = np.where(z[:, 1] + rng.normal(size=n) > 0, "web", rng.choice(["store", "phone", "partner"], n))
    frame["member"] = z[:, 2] + rng.normal(scale=0.5, size=n) > 0.3
    frame["churn"] = np.where(z[:, 0] - z[:, 1] + rng.normal(size=n) > 0.8, "yes", "no")
    frame.loc[rng.random(n) < 0.03, "num3"] = np.nan
    frame.loc[rng.random(n) < 0.02, "plan"] = None
    return frame


def resample(frame: pd.DataFrame, n: int, seed: int, noise: float = 0.05, flip: float = 0.05) -> pd.DataFrame:
    """Rows drawn with replacement; numbers get Gaussian noise (``noise`` x sd), a share
    ``flip`` of other values is redrawn from the column."""
    rng = np.random.default_rng(seed)
    out = frame.iloc[rng.integers(0, len(frame), n)].reset_index(drop=True)
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = out[c] + rng.normal(scale=noise * np.nanstd(out[c]), size=n)
        elif not pd.api.types.is_datetime64_any_dtype(out[c]) and not pd.api.types.is_integer_dtype(out[c]):
            redraw = rng.random(n) < flip
            out.loc[redraw, c] = frame[c].to_numpy()[rng.integers(0, len(frame), int(redraw.sum()))]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=50_000, help="train and synthetic rows (default 50000)")
    ap.add_argument("--data", help="CSV/Parquet to resample instead of the generated table")
    ap.add_argument("--target", default="churn", help="utility target (default churn)")
    ap.add_argument("--sensitive", nargs="*", default=["age", "plan"], help="attribute-risk columns")
    ap.add_argument("--gx", action="store_true", help="also time the Great Expectations suite")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch  # imported first so that its import is not charged to a metric

    from synthgen.validation.detection import detection_report
    from synthgen.validation.fidelity import fidelity_report
    from synthgen.validation.privacy import privacy_report
    from synthgen.validation.utility import utility_report

    n_hold = args.rows // 4
    if args.data:
        from synthgen.data.ingest import read_table

        real = resample(read_table(args.data), args.rows + n_hold, args.seed + 1)
    else:
        real = generated(args.rows + n_hold, args.seed)
    schema = infer_schema(real, target=args.target)
    real = conform(real, schema)
    train, holdout = real.iloc[: args.rows].reset_index(drop=True), real.iloc[args.rows :].reset_index(drop=True)
    synthetic = conform(resample(train, args.rows, args.seed + 2), schema)
    sensitive = [c for c in args.sensitive if c in schema]
    print(f"train {train.shape}, holdout {holdout.shape}, synthetic {synthetic.shape}; "
          f"torch threads {torch.get_num_threads()}; kinds "
          + ", ".join(f"{c.name}:{c.kind}" for c in schema.columns))

    timings: dict[str, float] = {}
    total = time.perf_counter()
    t = time.perf_counter()
    fid = fidelity_report(train, synthetic, schema)
    timings["fidelity (quality_score)"] = time.perf_counter() - t
    if args.gx:
        from synthgen.validation.gx_suite import build_suite, run_suite

        t = time.perf_counter()
        gx = run_suite(build_suite(train, schema), synthetic)
        timings["gx suite"] = time.perf_counter() - t
    t = time.perf_counter()
    det = detection_report(train, synthetic, schema)
    timings["detection_auc"] = time.perf_counter() - t
    t = time.perf_counter()
    util = utility_report(train, holdout, synthetic, schema, args.target if args.target in schema else None)
    timings["utility (tstr/trtr)"] = time.perf_counter() - t
    t = time.perf_counter()
    priv = privacy_report(train, synthetic, schema, holdout, sensitive)
    timings["privacy (all)"] = time.perf_counter() - t
    total = time.perf_counter() - total

    print("\nseconds per part")
    for name, s in timings.items():
        print(f"  {name:32s} {s:7.2f}")
        if name == "privacy (all)":
            for part, ps in priv["seconds"].items():
                print(f"    {part:30s} {ps:7.2f}")
    print(f"  {'total':32s} {total:7.2f}")
    print("\nvalues")
    values = {"quality_score": fid["quality_score"], "detection_auc": det["detection_auc"],
              **util["metrics"], **priv["metrics"]}
    if args.gx:
        values["gx_success_rate"] = gx["success_rate"]
    for name, v in values.items():
        print(f"  {name:32s} {'None' if v is None else f'{v:.4f}'}")


if __name__ == "__main__":
    main()
