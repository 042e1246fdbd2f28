"""Augment a downstream training set with conditional synthetic rows, and measure the benefit.

The augment stage reads the real train split and the trained synthesizer of the
pipeline (``output.dir/model``), draws synthetic rows *conditioned on the class* of
``data.target`` (``model.sample(k, conditions={target: cls}, seed=...)``: exact for
``tabular_gan``, bounded rejection sampling for ``ctgan``) and writes the real train
split plus those rows, each tagged in a provenance column ``_source`` (``real`` or
``synthetic``), to ``output.dir/augment/augmented.parquet``. How many rows per class:

* ``augment.mode: rebalance`` - every class is lifted to ``round(ratio x majority
  count)`` rows (classes already there get none); ``ratio: 1.0`` equalises the classes.
* ``augment.mode: enlarge`` - ``round((factor - 1) x labelled train rows)`` synthetic
  rows, split across classes in proportion to their real counts (largest remainder,
  so the total is exact): the class mix is kept.

Rows whose target is missing stay in the real part and count towards no class. The
holdout is never read for generation (the model was trained on the train split only)
and never written; its hash is recorded in the manifest.

**Benefit, measured.** For ``augment.seeds`` repeats ``i`` (synthetic draw seed
``augment.seed + i``; downstream model seed ``i``; repeat 0 is the written draw) each
downstream scikit-learn classifier of ``augment.models`` is trained three ways and
tested on the untouched real holdout:

* ``real`` - the real train split alone (the baseline);
* ``augmented`` - real plus the synthetic rows;
* ``reweighted`` - the real split with ``class_weight="balanced"``: the free
  alternative to synthetic rows for class imbalance, reported for comparison.

Scores: balanced accuracy, macro-F1 (over the classes present in the holdout) and the
recall of the minority class (``augment.minority``, default the rarest train class).
Features come from :class:`~synthgen.validation.encoding.MixedEncoder` (ranges of the
real train split), as in :mod:`synthgen.validation.utility`. ``benefit.json`` holds the
per-repeat scores and, per model and metric, mean / sd / min / max of each arm and of
the paired lift ``augmented - real`` (and ``augmented - reweighted``); ``overall``
averages the lift over the models per repeat first. Whichever sign the lift has, it is
reported as measured.

Outputs under ``output.dir/augment/``: ``augmented.parquet``, ``manifest.json``
(counts per class before/after, model, seeds, params hash, source hashes),
``benefit.json`` and ``report.html``; all logged to the pipeline's MLflow run.
"""

from __future__ import annotations

import html
import json
import logging
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthgen.config import AugmentConfig, Params
from synthgen.data.schema import TableSchema
from synthgen.errors import ConfigError, DataError, ModelError
from synthgen.validation.encoding import MixedEncoder, discrete_keys, modelled_columns

log = logging.getLogger(__name__)

SOURCE_COLUMN = "_source"  # provenance column of the augmented table: "real" | "synthetic"
METRICS = ("balanced_accuracy", "macro_f1", "minority_recall")
ARMS = ("real", "augmented", "reweighted")


@dataclass(frozen=True)
class AugmentLayout:
    """Where the augment stage writes, under ``output.dir/augment``."""

    root: Path

    @property
    def dir(self) -> Path:
        return self.root / "augment"

    @property
    def augmented(self) -> Path:
        return self.dir / "augmented.parquet"

    @property
    def manifest(self) -> Path:
        return self.dir / "manifest.json"

    @property
    def benefit(self) -> Path:
        return self.dir / "benefit.json"

    @property
    def report(self) -> Path:
        return self.dir / "report.html"

    @property
    def datasheet(self) -> Path:
        return self.dir / "DATASHEET.md"


# -- how many rows ---------------------------------------------------------------------
def class_counts(labels: pd.Series) -> dict[Any, int]:
    """Rows per class (missing labels excluded), largest first, ties by text."""
    counts = labels.dropna().value_counts()
    order = sorted(counts.index, key=lambda v: (-int(counts[v]), str(v)))
    return {_python(v): int(counts[v]) for v in order}


def plan_rows(counts: Mapping[Any, int], config: AugmentConfig) -> dict[Any, int]:
    """Synthetic rows to add per class (see the module docstring for the two modes).

    Args:
        counts: real rows per class (:func:`class_counts`).
        config: the ``augment`` section (``mode``, ``ratio``, ``factor``).

    Returns:
        ``{class: rows to add}`` in the order of ``counts``.
    """
    if config.mode == "rebalance":
        goal = int(np.floor(config.ratio * max(counts.values()) + 0.5))  # round half up
        return {c: max(goal - n, 0) for c, n in counts.items()}
    total = int(np.floor((config.factor - 1.0) * sum(counts.values()) + 0.5))
    share = np.array(list(counts.values()), dtype=float) / sum(counts.values()) * total
    add = np.floor(share).astype(int)
    order = np.argsort(-(share - add), kind="stable")  # largest remainders get the rest
    add[order[: total - int(add.sum())]] += 1
    return {c: int(k) for c, k in zip(counts, add)}


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _draw_seed(seed: int, index: int) -> int:
    """An independent sampling seed for class ``index`` of the draw seeded ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def synthesize(model: Any, plan: Mapping[Any, int], target: str, seed: int) -> pd.DataFrame:
    """Draw ``plan[cls]`` rows conditioned on ``target == cls`` for every class.

    Each class gets its own seed derived from ``seed``, so the draw is reproducible
    and classes do not share latent noise. Returns the rows in the schema's columns.
    """
    parts = [model.sample(k, conditions={target: cls}, seed=_draw_seed(seed, i))
             for i, (cls, k) in enumerate(plan.items()) if k > 0]
    if not parts:
        return model.sample(1, seed=seed).iloc[:0]
    return pd.concat(parts, ignore_index=True)


def combine(real: pd.DataFrame, synthetic: pd.DataFrame) -> pd.DataFrame:
    """Real rows then synthetic rows, with the provenance column :data:`SOURCE_COLUMN`."""
    synthetic = synthetic[list(real.columns)]
    out = pd.concat([real.assign(**{SOURCE_COLUMN: "real"}),
                     synthetic.assign(**{SOURCE_COLUMN: "synthetic"})], ignore_index=True)
    for column in real.columns:  # keep the real dtypes (concat may widen on empty parts)
        if out[column].dtype != real[column].dtype:
            out[column] = out[column].astype(real[column].dtype)
    return out


# -- benefit ---------------------------------------------------------------------------
def _classifier(name: str, seed: int, balanced: bool) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    weight = "balanced" if balanced else None
    if name == "logistic":
        return LogisticRegression(max_iter=2000, class_weight=weight)
    if name == "random_forest":
        return RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=1, class_weight=weight)
    return HistGradientBoostingClassifier(max_iter=100, random_state=seed, class_weight=weight)


def _spread(values: list[float | None]) -> dict[str, float | None]:
    x = np.array([v for v in values if v is not None], dtype=float)
    if not len(x):
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    return {"mean": float(x.mean()), "sd": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
            "min": float(x.min()), "max": float(x.max()), "n": int(len(x))}


def score_once(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame,
    schema: TableSchema,
    target: str,
    minority: Any,
    models: list[str],
    seed: int,
) -> list[dict[str, Any]]:
    """One repeat: every model x arm, scored on the holdout.

    Returns:
        ``[{"model", "arm", "balanced_accuracy", "macro_f1", "minority_recall"}, ...]``
        (``minority_recall`` is None when the holdout has no minority row).
    """
    from threadpoolctl import threadpool_limits

    real, synthetic, holdout = (f[f[target].notna()] for f in (real, synthetic, holdout))
    features = modelled_columns(schema, exclude=[target])
    if features:
        enc = MixedEncoder.fit(real, schema, features, others=[holdout, synthetic])
        x_real, x_syn, x_ho = (enc.features(f) for f in (real, synthetic, holdout))
    else:  # the target alone: constant features
        x_real, x_syn, x_ho = (np.zeros((len(f), 1), np.float32) for f in (real, synthetic, holdout))
    classes = list(dict.fromkeys(discrete_keys(real[target])))
    index = {k: i for i, k in enumerate(classes)}

    def codes(frame: pd.DataFrame) -> np.ndarray:
        return np.array([index.get(k, len(classes)) for k in discrete_keys(frame[target])], dtype=np.int64)

    y_real, y_syn, y_ho = codes(real), codes(synthetic), codes(holdout)
    minority_code = index[discrete_keys(pd.Series([minority], dtype=object))[0]]
    train_sets = {
        "real": (x_real, y_real, False),
        "augmented": (np.vstack([x_real, x_syn]), np.concatenate([y_real, y_syn]), False),
        "reweighted": (x_real, y_real, True),
    }
    rows = []
    for name in models:
        for arm, (x, y, balanced) in train_sets.items():
            model = _classifier(name, seed, balanced)
            with warnings.catch_warnings(), threadpool_limits(1):
                warnings.simplefilter("ignore")
                model.fit(x, y)
                pred = model.predict(x_ho)
            rows.append({"model": name, "arm": arm, **holdout_scores(y_ho, pred, minority_code)})
    return rows


def holdout_scores(y_true: np.ndarray, pred: np.ndarray, minority_code: int) -> dict[str, float | None]:
    """:data:`METRICS` of predicted class codes on the holdout: balanced accuracy, macro-F1
    over the classes present in ``y_true``, and the recall of ``minority_code`` (None when
    the holdout has none of it)."""
    from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score

    labels = np.unique(y_true)
    recall = (float(recall_score(y_true, pred, labels=[minority_code], average="macro", zero_division=0))
              if (y_true == minority_code).any() else None)
    return {
        "balanced_accuracy": float(balanced_accuracy_score(y_true, pred)),
        "macro_f1": float(f1_score(y_true, pred, labels=labels, average="macro", zero_division=0)),
        "minority_recall": recall,
    }


def summarize(records: list[dict[str, Any]], models: list[str]) -> dict[str, Any]:
    """Per model and metric: the spread of each arm and of the paired lifts; ``overall``
    is the spread over repeats of the lift averaged over the models."""
    by = {(r["seed"], r["model"], r["arm"]): r for r in records}
    seeds = sorted({r["seed"] for r in records})

    def lift(seed: int, model: str, metric: str, base: str) -> float | None:
        a, b = by[(seed, model, "augmented")][metric], by[(seed, model, base)][metric]
        return None if a is None or b is None else a - b

    summary: dict[str, Any] = {"models": {}, "overall": {}}
    for model in models:
        summary["models"][model] = {
            metric: {
                **{arm: _spread([by[(s, model, arm)][metric] for s in seeds]) for arm in ARMS},
                "lift": _spread([lift(s, model, metric, "real") for s in seeds]),
                "lift_vs_reweighted": _spread([lift(s, model, metric, "reweighted") for s in seeds]),
            }
            for metric in METRICS
        }
    for metric in METRICS:
        per_seed = []
        for s in seeds:
            lifts = [lift(s, m, metric, "real") for m in models]
            per_seed.append(None if any(v is None for v in lifts) else float(np.mean(lifts)))
        summary["overall"][metric] = {"lift": _spread(per_seed)}
    return summary


def measure_benefit(
    real: pd.DataFrame,
    holdout: pd.DataFrame,
    model: Any,
    plan: Mapping[Any, int],
    target: str,
    minority: Any,
    config: AugmentConfig,
    first_draw: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Downstream models on real vs real+synthetic over ``config.seeds`` repeats.

    Args:
        real: the real train split.
        holdout: the real holdout (only ever the test set).
        model: the fitted synthesizer.
        plan: synthetic rows per class (:func:`plan_rows`).
        target: the class column.
        minority: the class whose recall is reported.
        config: the ``augment`` section (``seed``, ``seeds``, ``models``).
        first_draw: the synthetic rows of repeat 0 if already drawn (seed ``config.seed``).

    Returns:
        ``{"protocol", "minority", "records", "models", "overall", "seconds"}``.
    """
    start = time.perf_counter()
    records = []
    for i in range(config.seeds):
        draw_seed = config.seed + i
        synthetic = first_draw if i == 0 and first_draw is not None else synthesize(model, plan, target, draw_seed)
        for row in score_once(real, synthetic, holdout, model.schema, target, minority, list(config.models), i):
            records.append({"seed": i, "draw_seed": draw_seed, **row})
        log.info("augment benefit: repeat %d/%d done", i + 1, config.seeds)
    summary = summarize(records, list(config.models))
    return {
        "measured": True,
        "protocol": {
            "test_set": "holdout (real, untouched)", "repeats": config.seeds, "models": list(config.models),
            "arms": {"real": "real train split", "augmented": "real + synthetic rows",
                     "reweighted": "real train split, class_weight='balanced'"},
            "lift": "augmented - real, paired per repeat", "metrics": list(METRICS),
            "draw_seeds": [config.seed + i for i in range(config.seeds)],
        },
        "minority": _python(minority),
        **summary,
        "records": records,
        "seconds": time.perf_counter() - start,
    }


# -- report ----------------------------------------------------------------------------
def _counts_figure(classes: dict[str, dict[str, int]], unit: str = "rows"):
    from synthgen.reporting import _pyplot

    plt = _pyplot()
    names = list(classes)
    before = np.array([classes[c]["before"] for c in names])
    added = np.array([classes[c]["added"] for c in names])
    fig, ax = plt.subplots(figsize=(5, 3), dpi=90)
    x = np.arange(len(names))
    ax.bar(x, before, 0.6, label="real", color="#4C72B0")
    ax.bar(x, added, 0.6, bottom=before, label="synthetic", color="#DD8452")
    ax.set_xticks(x, [n[:14] for n in names], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(unit)
    ax.set_title(f"Training {unit} per class", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _scores_figure(benefit: dict[str, Any]):
    from synthgen.reporting import _pyplot

    plt = _pyplot()
    models = benefit["protocol"]["models"]
    colors = {"real": "#4C72B0", "augmented": "#DD8452", "reweighted": "#55A868"}
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.2), dpi=90)
    for ax, metric in zip(np.atleast_1d(axes), METRICS):
        for j, arm in enumerate(ARMS):
            for m, model in enumerate(models):
                values = [r[metric] for r in benefit["records"]
                          if r["model"] == model and r["arm"] == arm and r[metric] is not None]
                xpos = m + (j - 1) * 0.25
                ax.scatter([xpos] * len(values), values, s=12, alpha=0.5, color=colors[arm])
                if values:
                    ax.errorbar(xpos, np.mean(values), yerr=np.std(values, ddof=1) if len(values) > 1 else 0,
                                fmt="o", color=colors[arm], capsize=3, label=arm if m == 0 else None)
        ax.set_xticks(range(len(models)), models, fontsize=8)
        ax.set_title(metric, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Holdout scores per repeat (dots) and mean ± sd", fontsize=9)
    fig.tight_layout()
    return fig


def build_augment_report(manifest: dict[str, Any], benefit: dict[str, Any], extra_html: str = "") -> str:
    """The self-contained HTML page of an augment run (figures inlined as PNG).

    ``manifest["unit"]`` (default ``rows``) names what was added; ``extra_html`` goes
    after the class counts (the image stage puts its sample grid there)."""
    from synthgen.datasheet import describe_generator_verdict
    from synthgen.reporting import _png, _table

    unit = manifest.get("unit", "rows")
    parts = ["<h1>synthgen augmentation report</h1>",
             f"<p>Target <b>{html.escape(str(manifest['target']))}</b>, mode <b>{manifest['mode']}</b>, "
             f"model <b>{html.escape(manifest['model'])}</b>, {manifest['rows']['synthetic']} synthetic {unit} "
             f"added to {manifest['rows']['real']} real {unit}.</p>",
             f"<p>The generator's own synthetic data: "
             f"<b>{html.escape(describe_generator_verdict(manifest.get('generator_validation')))}</b>. "
             f"The set contains the real train split: handle it as the real data.</p>",
             f"<h2>{unit.capitalize()} per class</h2>",
             _table([[c, v["before"], v["added"], v["after"]] for c, v in manifest["classes"].items()],
                    ["class", "real", "synthetic", "after"]),
             f'<img alt="class counts" src="data:image/png;base64,{_png(_counts_figure(manifest["classes"], unit))}">',
             extra_html,
             "<h2>Benefit on the holdout</h2>"]
    if not benefit.get("measured"):
        parts.append("<p>Not measured (<code>augment.benefit: false</code>).</p>")
    else:
        rows = []
        for model, metrics in benefit["models"].items():
            for metric, s in metrics.items():
                rows.append([model, metric, *(s[a]["mean"] for a in ARMS), s["lift"]["mean"], s["lift"]["sd"],
                             s["lift"]["min"], s["lift"]["max"], s["lift_vs_reweighted"]["mean"]])
        parts += [
            f"<p>{benefit['protocol']['repeats']} repeats; minority class "
            f"<b>{html.escape(str(benefit['minority']))}</b>. Lift = augmented − real, paired per repeat; "
            "reported as measured, whichever its sign.</p>",
            _table(rows, ["model", "metric", "real", "augmented", "reweighted", "lift mean", "lift sd",
                          "lift min", "lift max", "aug − reweighted"]),
            f'<img alt="benefit scores" src="data:image/png;base64,{_png(_scores_figure(benefit))}">',
        ]
    style = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>synthgen augmentation report</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


# -- the stage -------------------------------------------------------------------------
def _check(params: Params, schema: TableSchema, train: pd.DataFrame) -> tuple[str, dict[Any, int], Any]:
    """Validate the target and minority against the data; return (target, counts, minority)."""
    target = params.data.target
    if target not in schema:
        raise ConfigError(f"data.target: {target!r} is not a column of the table; columns: {schema.names}")
    spec = schema[target]
    if not spec.modelled or not spec.discrete:
        raise ConfigError(
            f"data.target: {target!r} has kind {spec.kind!r}; augment needs a discrete class column "
            "(categorical or boolean)"
        )
    if SOURCE_COLUMN in train.columns:
        raise DataError(f"column {SOURCE_COLUMN!r} is reserved for the provenance of augmented rows; rename it")
    counts = class_counts(train[target])
    if len(counts) < 2:
        raise DataError(f"data.target: {target!r} has {len(counts)} class(es) in the train split; need at least 2")
    minority = params.augment.minority
    if minority is None:
        minority = list(counts)[-1]
    else:
        keys = dict(zip(discrete_keys(pd.Series(list(counts), dtype=object)), counts))
        key = discrete_keys(pd.Series([minority], dtype=object))[0]
        if key not in keys:
            raise ConfigError(f"augment.minority: {minority!r} is not a class of {target!r}; classes: {list(counts)}")
        minority = keys[key]
    return target, counts, minority


def augment_stage(params: Params) -> dict[str, Any]:
    """Write the augmented train set, its manifest, the measured benefit and a report.

    Image runs (``data.kind: image``) go to :func:`synthgen.augment_images.augment_images_stage`.

    Raises:
        ConfigError: ``data.target`` unset, not a column or not discrete; ``augment.minority``
            not a class.
        ModelError: no trained model under ``output.dir/model``.
        DataError: the train or holdout split is missing.
    """
    import synthgen
    from synthgen import __version__
    from synthgen.datasheet import render_augment_datasheet
    from synthgen.io import file_hash, write_json, write_parquet, write_text
    from synthgen.pipeline import Layout, _read_parquet, _tracker_for

    if params.data.kind == "image":  # the class is the image's label: synthgen/augment_images.py
        from synthgen.augment_images import augment_images_stage

        return augment_images_stage(params)
    if params.data.target is None:
        raise ConfigError("data.target: required by the augment stage (the class column to rebalance or enlarge)")
    layout = Layout(params.out)
    out = AugmentLayout(params.out)
    if not (layout.model / "synthesizer.json").is_file():
        raise ModelError(f"output.dir: no trained model in {layout.model}; run `synthgen train` first")
    model = synthgen.load(layout.model)
    train = _read_parquet(layout.train, "train split")
    config = params.augment
    holdout = _read_parquet(layout.holdout, "holdout split") if config.benefit else None
    target, counts, minority = _check(params, model.schema, train)
    holdout_hash = file_hash(layout.holdout) if layout.holdout.is_file() else None

    plan = plan_rows(counts, config)
    start = time.perf_counter()
    synthetic = synthesize(model, plan, target, config.seed)
    seconds = time.perf_counter() - start
    augmented = combine(train, synthetic)
    write_parquet(out.augmented, augmented)
    after = class_counts(augmented[target])
    log.info("augment: %s added %d synthetic rows in %.1fs (%s)", config.mode, len(synthetic), seconds,
             ", ".join(f"{c}: {counts[c]} -> {after.get(c, 0)}" for c in counts))

    tracker = _tracker_for(params, layout)
    benefit: dict[str, Any] = {"measured": False}
    if config.benefit:
        benefit = measure_benefit(train, holdout, model, plan, target, minority, config, first_draw=synthetic)
    write_json(out.benefit, benefit)
    manifest = {
        "target": target,
        "mode": config.mode,
        "ratio": config.ratio if config.mode == "rebalance" else None,
        "factor": config.factor if config.mode == "enlarge" else None,
        "classes": {str(c): {"before": counts[c], "added": plan[c], "after": after.get(c, 0)} for c in counts},
        "unlabelled_real_rows": int(train[target].isna().sum()),
        "rows": {"real": len(train), "synthetic": len(synthetic), "total": len(augmented)},
        "provenance_column": SOURCE_COLUMN,
        "columns": list(augmented.columns),
        "model": model.name,
        **record_fields(params, layout.model, layout.train, holdout_hash, out.augmented, seconds, benefit,
                        _python(minority)),
        "mlflow_run_id": tracker.run_id,
        "synthgen_version": __version__,
    }
    write_json(out.manifest, manifest)
    write_text(out.datasheet, render_augment_datasheet(manifest, benefit))
    write_text(out.report, build_augment_report(manifest, benefit))

    log_augment(tracker, out, config, benefit, len(synthetic), len(augmented))
    return manifest


def summary_lines(manifest: dict[str, Any]) -> list[str]:
    """What an augment run prints: rows added per class, the balanced-accuracy lift, the
    generator's verdict (the CLI and the Prefect flow)."""
    from synthgen.datasheet import describe_generator_verdict

    added = ", ".join(f"{c} {v['before']}->{v['after']}" for c, v in manifest["classes"].items())
    lines = [f"augment: {manifest['rows']['synthetic']} synthetic {manifest.get('unit', 'rows')} added ({added})"]
    lift = manifest["benefit"].get("balanced_accuracy")
    if lift and lift["mean"] is not None:
        lines.append(f"augment: balanced-accuracy lift {lift['mean']:+.4f} (sd {lift['sd']:.4f}, "
                     f"min {lift['min']:+.4f}, max {lift['max']:+.4f}, {lift['n']} repeats)")
    lines.append(f"augment: the generator's own synthetic data: "
                 f"{describe_generator_verdict(manifest.get('generator_validation'))}")
    return lines


def generator_verdict(run_manifest: Path, model_hash: str) -> dict[str, Any] | None:
    """The verdict on the synthetic data of the very model that augments (the run's
    ``manifest.json``, matched by model hash), or None when none is on record."""
    if not run_manifest.is_file():
        return None
    try:
        manifest = json.loads(run_manifest.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{run_manifest}: corrupt ({exc.msg}); rerun `synthgen validate`") from None
    verdict = manifest.get("validation")
    if manifest.get("model_hash") != model_hash or not verdict:
        return None
    return {"passed": verdict["passed"], "failed_checks": verdict.get("failed_checks", []),
            "key_metrics": verdict.get("key_metrics", {}), "synthetic_hash": manifest.get("synthetic_hash")}


def record_fields(params: Params, model_dir: Path, train_path: Path, holdout_hash: str | None,
                  augmented_path: Path, seconds: float, benefit: dict[str, Any], minority: Any) -> dict[str, Any]:
    """The manifest entries an augment run records for tables and images alike: model,
    seeds, params and source hashes, what the holdout was used for, the lift summary."""
    from synthgen.io import file_hash, run_params_hash, source_hash
    from synthgen.pipeline import Layout

    config = params.augment
    model_hash = file_hash(model_dir)
    return {
        "dataset": "augmented",
        "augmented": augmented_path.name,
        "model_dir": model_dir.name,
        "model_hash": model_hash,
        "generator_validation": generator_verdict(Layout(params.out).manifest, model_hash),
        "seed": config.seed,
        "sample_seconds": seconds,
        "augment": config.model_dump(),
        "params_hash": run_params_hash(params.to_dict()),
        "source_data": str(params.data.path),
        "source_data_hash": source_hash(params.data.path),
        "train_hash": file_hash(train_path),
        "holdout_hash": holdout_hash,
        "holdout_used_for": "benefit test set only" if config.benefit else "nothing",
        "augmented_hash": file_hash(augmented_path),
        "benefit": {"file": "benefit.json", "minority": minority,
                    **({m: benefit["overall"][m]["lift"] for m in METRICS} if benefit.get("measured") else {})},
    }


def log_augment(tracker: Any, out: AugmentLayout, config: AugmentConfig, benefit: dict[str, Any],
                n_synthetic: int, n_total: int) -> None:
    """Log counts, lifts (mean/sd/min/max) and per-arm means, the config and the files of
    an augment run to the pipeline's MLflow run, then end it."""
    metrics: dict[str, float] = {"augment_synthetic_rows": n_synthetic, "augment_total_rows": n_total}
    if benefit.get("measured"):
        for metric in METRICS:
            overall = benefit["overall"][metric]["lift"]
            for stat in ("mean", "sd", "min", "max"):
                if overall[stat] is not None:
                    metrics[f"augment_lift_{metric}_{stat}"] = overall[stat]
            for name, per_model in benefit["models"].items():
                for arm in ARMS:
                    if per_model[metric][arm]["mean"] is not None:
                        metrics[f"augment_{name}_{arm}_{metric}"] = per_model[metric][arm]["mean"]
    try:
        tracker.log_metrics(metrics)
        tracker.set_tags({"synthgen.augment": json.dumps(config.model_dump())})
        for path in (out.manifest, out.benefit, out.report, out.datasheet):
            tracker.log_artifact(path, "augment")
    finally:
        tracker.end("FINISHED")
