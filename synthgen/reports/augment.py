"""The augment report: a self-contained HTML page with the rows (images) added per class,
the generator's verdict and the measured benefit on the holdout, figures inlined as PNG."""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from synthgen.reports.datasheet import describe_generator_verdict
from synthgen.reports.figures import html_table, png, pyplot
from synthgen.validation.benefit import ARMS, METRICS


def counts_figure(classes: dict[str, dict[str, int]], unit: str = "rows"):
    plt = pyplot()
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


def scores_figure(benefit: dict[str, Any]):
    plt = pyplot()
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
    unit = manifest.get("unit", "rows")
    parts = ["<h1>synthgen augmentation report</h1>",
             f"<p>Target <b>{html.escape(str(manifest['target']))}</b>, mode <b>{manifest['mode']}</b>, "
             f"model <b>{html.escape(manifest['model'])}</b>, {manifest['rows']['synthetic']} synthetic {unit} "
             f"added to {manifest['rows']['real']} real {unit}.</p>",
             f"<p>The generator's own synthetic data: "
             f"<b>{html.escape(describe_generator_verdict(manifest.get('generator_validation')))}</b>. "
             f"The set contains the real train split: handle it as the real data.</p>",
             f"<h2>{unit.capitalize()} per class</h2>",
             html_table([[c, v["before"], v["added"], v["after"]] for c, v in manifest["classes"].items()],
                    ["class", "real", "synthetic", "after"]),
             f'<img alt="class counts" src="data:image/png;base64,{png(counts_figure(manifest["classes"], unit))}">',
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
            html_table(rows, ["model", "metric", "real", "augmented", "reweighted", "lift mean", "lift sd",
                          "lift min", "lift max", "aug − reweighted"]),
            f'<img alt="benefit scores" src="data:image/png;base64,{png(scores_figure(benefit))}">',
        ]
    style = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>synthgen augmentation report</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
