"""What the table and image augment stages share: where they write, how many rows (images)
per class, the seeds of each class's draw, the manifest fields, the generator's verdict,
MLflow logging and the summary printed at the end.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthgen.config import AugmentConfig, Params
from synthgen.errors import DataError
from synthgen.io import data_digest, file_hash
from synthgen.reports.datasheet import describe_generator_verdict
from synthgen.stages.common import Layout, source_fields
from synthgen.validation.benefit import ARMS, METRICS

SOURCE_COLUMN = "_source"  # provenance column of the augmented table: "real" | "synthetic"


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
    return {python_value(v): int(counts[v]) for v in order}


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


def python_value(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def draw_seed(seed: int, index: int) -> int:
    """An independent sampling seed for class ``index`` of the draw seeded ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


# -- records ---------------------------------------------------------------------------
def summary_lines(manifest: dict[str, Any]) -> list[str]:
    """What an augment run prints: rows added per class, the balanced-accuracy lift, the
    generator's verdict (the CLI and the Prefect flow)."""
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
        **source_fields(params),
        "train_hash": data_digest(train_path),
        "holdout_hash": holdout_hash,
        "holdout_used_for": "benefit test set only" if config.benefit else "nothing",
        "augmented_hash": data_digest(augmented_path),
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
