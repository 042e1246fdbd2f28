"""How high can a marginal-based private table's TSTR ratio go? Ceilings measured on the real
train split itself, without privacy and without a model (issue 17).

``dp_marginals`` (and MST/AIM, on the same public domains) discretise each number into
equal-width bins over the schema's public range and draw it uniformly within its bin; with a
``data.target`` its start measures the target's pair with each column. This script applies
those losses to the *real* train split and scores the result with synthgen's own
``tstr_ratio`` (the same models, features and holdout as ``synthgen validate``), so a
number here bounds what any noise level and any fit can reach:

    binned-B           every number redrawn uniformly within its bin of B equal-width bins
                       (the discretisation's loss; every joint relation kept at bin level)
    given-target       every column shuffled within the rows of its target class: each
                       (target, column) pair exact, every other relation gone (what the
                       start's pairs alone hold)
    given-target+A,B   the same, but columns A and B shuffled together (their 3-way
                       relation with the target kept: ``--joint A,B``)

Example (the numbers of BENCHMARKS.md, "Private synthetic tables", "Why diamonds' TSTR
stays near 0.82")::

    python bench/private_ceiling.py --table diamonds --joint depth,table --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from private import TABLES, table_path  # noqa: E402

from synthgen.data.schema import TableSchema  # noqa: E402
from synthgen.validation.utility import utility_report  # noqa: E402


def ingest(table: str, work: Path) -> Path:
    """``synthgen ingest`` of the table with the benchmark's split (data.seed 0): the run dir."""
    out = work / f"{table}-ceiling"
    if not (out / "data" / "train.parquet").exists():
        data = table_path(table, work / "tables")
        cmd = [sys.executable, "-m", "synthgen.cli", "ingest", "--params", str(ROOT / "params.yaml"),
               "--set", f"data.path={data}", "--set", f"data.target={TABLES[table][2]}",
               "--set", f"output.dir={out}", "--set", "tracking.registered_model=null"]
        subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
    return out


def binned(train: pd.DataFrame, schema: TableSchema, bins: int, rng: np.random.Generator) -> pd.DataFrame:
    """Every continuous number redrawn uniformly within its equal-width bin over the schema range."""
    out = train.copy()
    for spec in schema.columns:
        if not spec.modelled or spec.discrete or spec.kind not in ("continuous", "integer"):
            continue
        values = train[spec.name].to_numpy(dtype=float, copy=True)  # never a view of the real split
        edges = np.linspace(float(spec.min), float(spec.max), bins + 1)
        ok = np.isfinite(values)
        b = np.clip(np.searchsorted(edges, values[ok], side="right") - 1, 0, bins - 1)
        values[ok] = edges[b] + rng.random(ok.sum()) * (edges[b + 1] - edges[b])
        out[spec.name] = np.round(values) if spec.kind == "integer" else values
    return out


def given_target(train: pd.DataFrame, target: str, groups: list[list[str]], rng: np.random.Generator
                 ) -> pd.DataFrame:
    """Each group of columns shuffled (rows kept together within the group) within each target class."""
    out = train.copy()
    for cols in groups:
        for _, idx in train.groupby(target, observed=True).groups.items():
            idx = np.asarray(idx)
            out.loc[idx, cols] = train.loc[rng.permutation(idx), cols].to_numpy()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", default="diamonds", choices=sorted(TABLES))
    ap.add_argument("--bins", default="50,100,200,400", help="comma list of equal-width bin counts")
    ap.add_argument("--joint", default="", help="A,B: also keep these two columns together given the target")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--work", type=Path, default=Path("/tmp/synthgen-private"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "private_ceiling.jsonl")
    args = ap.parse_args(argv)
    run = ingest(args.table, args.work)
    schema = TableSchema.load(run / "schema.json")
    train, holdout = (pd.read_parquet(run / "data" / f"{s}.parquet") for s in ("train", "holdout"))
    target = TABLES[args.table][2]
    others = [c.name for c in schema.columns if c.modelled and c.name != target]
    variants: dict[str, object] = {"real": lambda rng: train}
    for b in (int(x) for x in args.bins.split(",") if x):
        variants[f"binned-{b}"] = lambda rng, b=b: binned(train, schema, b, rng)
    variants["given-target"] = lambda rng: given_target(train, target, [[c] for c in others], rng)
    if args.joint:
        pair = args.joint.split(",")
        rest = [[c] for c in others if c not in pair]
        variants[f"given-target+{args.joint}"] = lambda rng: given_target(train, target, [pair, *rest], rng)
    rows = []
    for name, make in variants.items():
        ratios = []
        for seed in (int(s) for s in args.seeds.split(",")):
            frame = make(np.random.default_rng(seed))
            report = utility_report(train, holdout, frame, schema, target, seed=0)
            ratios.append(report["metrics"]["tstr_ratio"])
            rows.append({"table": args.table, "variant": name, "seed": seed, **report["metrics"],
                         "models": report["models"]})
        print(f"{args.table:10s} {name:28s} tstr_ratio {statistics.mean(ratios):.3f} ± "
              f"{statistics.pstdev(ratios):.3f}  ({len(ratios)} seeds)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
