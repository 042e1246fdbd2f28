"""MST or AIM (Private-PGM's reference mechanisms) on a synthgen train split.

Runs in the *reference* environment made by ``bench/ref_env.sh`` (its own venv, never
synthgen's), with ``PYTHONPATH`` at the reference's ``mechanisms/`` folder; ``bench/private.py``
calls it as a subprocess. It imports nothing from synthgen: it reads
``<output.dir>/data/train.parquet`` and ``schema.json`` as written by ``synthgen ingest``.

Public domain (the items synthgen declares public under ``data.public_bounds``): each
discrete column's levels from the schema; each numeric column's schema range cut into
``--bins`` equal-width bins (an integer column: at most one bin per integer, over
``[min - 0.5, max + 0.5]``), plus one bin per declared point mass (e.g. exact zeros); one
extra "missing" level for every column the schema says may be missing. Nothing here is
read from the values except the counts the mechanism measures. Output rows are decoded
back: a level, a point mass, a uniform draw inside the bin rounded to the column's public
decimals (integers rounded), or missing.

Prints one JSON line: fit_seconds (the mechanism call, reference code only), the domain,
and for AIM the caps used (``--aim-max-model-size`` MB, ``--aim-max-iters``, ``--aim-rounds``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time

import numpy as np
import pandas as pd

DISCRETE = ("categorical", "boolean")
NUMERIC = ("continuous", "integer")


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def encode(train: pd.DataFrame, schema: dict, bins: int):
    """Integer codes per modelled column and the decoders that undo them."""
    codes, sizes, decoders, passthrough = {}, {}, {}, {}
    for spec in schema["columns"]:
        name, kind = spec["name"], spec["kind"]
        col = train[name]
        may_miss = (spec.get("missing_rate") or 0) > 0
        if kind in DISCRETE:
            levels = list(spec["categories"])
            index = {str(v): i for i, v in enumerate(levels)}
            miss = len(levels)
            x = np.array([miss if _is_missing(v) else index.get(str(v), miss) for v in col], dtype=int)
            codes[name], sizes[name] = x, len(levels) + (1 if may_miss or (x == miss).any() else 0)
            decoders[name] = ("levels", levels)
        elif kind in NUMERIC:
            lo, hi = float(spec["min"]), float(spec["max"])
            masses = list((spec.get("structure") or {}).get("point_masses") or [])
            if kind == "integer":  # at most one bin per integer, over [min - 0.5, max + 0.5]
                nb = int(min(bins, round(hi - lo) + 1))
                edges = np.linspace(lo - 0.5, hi + 0.5, nb + 1)
            else:
                nb = bins if hi > lo else 1
                edges = np.linspace(lo, hi, nb + 1)
            v = col.to_numpy(dtype=float)
            x = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, nb - 1) + len(masses)
            for i, m in enumerate(masses):
                x[v == m] = i
            miss = len(masses) + nb
            x[np.isnan(v)] = miss
            codes[name], sizes[name] = x.astype(int), miss + (1 if may_miss or np.isnan(v).any() else 0)
            decimals = (spec.get("structure") or {}).get("decimals")
            if kind == "integer":
                decimals = 0
            decoders[name] = ("numeric", masses, edges, decimals, lo, hi)
        else:  # constant / id / datetime: not modelled by the reference here, refilled
            passthrough[name] = spec
    return codes, sizes, decoders, passthrough


def decode(synth: pd.DataFrame, schema: dict, decoders, passthrough, rng) -> pd.DataFrame:
    out = {}
    for spec in schema["columns"]:
        name = spec["name"]
        if name in passthrough:
            out[name] = ([spec.get("constant")] * len(synth) if spec["kind"] == "constant"
                         else np.arange(len(synth)))
            continue
        x = synth[name].to_numpy(dtype=int)
        dec = decoders[name]
        if dec[0] == "levels":
            levels = dec[1]
            vals = np.array([levels[i] if i < len(levels) else None for i in x], dtype=object)
            out[name] = pd.Series(vals).astype(spec["dtype"]) if spec["dtype"] != "object" and \
                (x < len(levels)).all() else vals
        else:
            _, masses, edges, decimals, lo, hi = dec
            nm, nb = len(masses), len(edges) - 1
            vals = np.full(len(x), np.nan)
            for i, m in enumerate(masses):
                vals[x == i] = m
            inb = (x >= nm) & (x < nm + nb)
            b = x[inb] - nm
            vals[inb] = rng.uniform(edges[b], edges[b + 1])
            if decimals is not None:
                vals[inb] = np.round(vals[inb], int(decimals))
            vals[inb] = np.clip(vals[inb], lo, hi)  # the schema range
            out[name] = vals.astype(spec["dtype"]) if not np.isnan(vals).any() else vals
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", choices=["mst", "aim"], required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--schema", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epsilon", type=float, required=True)
    ap.add_argument("--delta", type=float, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bins", type=int, default=20)
    ap.add_argument("--aim-max-model-size", type=float, default=80.0, help="MB (reference default 80)")
    ap.add_argument("--aim-max-iters", type=int, default=1000, help="mirror-descent iterations per round (default 1000)")
    ap.add_argument("--aim-rounds", type=int, default=None, help="budget split (default 16 x columns)")
    ap.add_argument("--max-cells", type=int, default=10000, help="AIM workload: 2-way marginals up to this size")
    args = ap.parse_args()

    from mbi import Dataset, Domain

    np.random.seed(args.seed)  # the reference draws from the global numpy generator
    rng = np.random.default_rng(args.seed + 1)
    schema = json.loads(open(args.schema).read())
    train = pd.read_parquet(args.train)
    codes, sizes, decoders, passthrough = encode(train, schema, args.bins)
    names = list(codes)
    data = Dataset(pd.DataFrame(codes)[names], Domain(names, [sizes[n] for n in names]))
    n = len(train)
    info: dict = {"method": args.method, "columns": len(names), "domain": {k: int(v) for k, v in sizes.items()},
                  "bins": args.bins}
    t0 = time.perf_counter()
    if args.method == "mst":
        from mst import MST

        synth = MST(data, args.epsilon, args.delta)
    else:
        from aim import AIM

        workload = [(cl, 1.0) for cl in itertools.combinations(names, 2) if data.domain.size(cl) <= args.max_cells]
        mech = AIM(args.epsilon, args.delta, rounds=args.aim_rounds, max_model_size=args.aim_max_model_size,
                   max_iters=args.aim_max_iters)
        _, synth = mech.run(data, workload, num_synth_rows=n)
        info.update(aim_max_model_size=args.aim_max_model_size, aim_max_iters=args.aim_max_iters,
                    aim_rounds=args.aim_rounds or 16 * len(names), workload=len(workload))
    info["fit_seconds"] = time.perf_counter() - t0
    frame = decode(synth.df.reset_index(drop=True), schema, decoders, passthrough, rng)
    frame.to_parquet(args.out, index=False)
    info["rows"] = len(frame)
    print(json.dumps(info))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
