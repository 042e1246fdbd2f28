"""Plots people would rather look at than read, and the self-contained HTML trust reports.

Two reports per run, each holding every figure as an embedded PNG so it opens anywhere
without the run's other files:

* :func:`build_report` - the full report (``report.html`` in the run directory), for the
  data owner: the verdict and its checks, per-column real-vs-synthetic distributions, the
  pair-trend difference heatmap, the loss curves, epsilon spent, the privacy figures.
* :func:`build_public_report` - the public report (``published/report.html``), built from
  no real row: the same verdict, checks, metrics and loss curves, and per-column
  distributions of the synthetic data only. It takes no real data argument, so nothing
  of the real table can reach it.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd

from synthgen.data.schema import TableSchema
from synthgen.reports.figures import html_table, loss_figure, png, public_note, pyplot

_REAL, _SYN = "#4C72B0", "#DD8452"
_PRIVACY_PREFIXES = ("exact_copy", "dcr", "nndr", "mia", "attribute_risk", "epsilon")


def _column_figure(real: pd.Series, synthetic: pd.Series, kind: str, score: float | None):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4, 2.6), dpi=90)
    if kind in ("categorical", "boolean"):
        real_freq = real.astype(str).value_counts(normalize=True)
        syn_freq = synthetic.astype(str).value_counts(normalize=True)
        levels = list(real_freq.index[:15])
        x = np.arange(len(levels))
        ax.bar(x - 0.2, real_freq.reindex(levels).fillna(0), 0.4, label="real", color=_REAL)
        ax.bar(x + 0.2, syn_freq.reindex(levels).fillna(0), 0.4, label="synthetic", color=_SYN)
        ax.set_xticks(x, [lvl[:12] for lvl in levels], rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("share")
    else:
        to_num = (lambda s: s.astype("int64") / 1e9) if kind == "datetime" else (lambda s: s.astype(float))
        r, s = to_num(real.dropna()), to_num(synthetic.dropna())
        edges = np.histogram_bin_edges(r, bins=30) if len(r) else 30
        ax.hist(r, bins=edges, density=True, alpha=0.55, label="real", color=_REAL)
        ax.hist(s, bins=edges, density=True, alpha=0.55, label="synthetic", color=_SYN)
        ax.set_ylabel("density")
    title = real.name if score is None else f"{real.name}  (score {score:.2f})"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _pair_heatmap(columns: list[str], pairs: dict[str, float | None]):
    plt = pyplot()
    n = len(columns)
    matrix = np.full((n, n), np.nan)
    index = {c: i for i, c in enumerate(columns)}
    for key, score in pairs.items():
        a, _, b = key.partition("|")
        if a in index and b in index and score is not None:
            matrix[index[a], index[b]] = matrix[index[b], index[a]] = 1 - score
    np.fill_diagonal(matrix, 0)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * n, 1 + 0.4 * n), dpi=90)
    image = ax.imshow(matrix, cmap="Reds", vmin=0, vmax=1)
    labels = [c[:14] for c in columns]
    ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_title("Pair-trend difference (1 - similarity)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


COLUMN_TELL = 0.7  # a column whose single-column detection AUC passes this gives rows away alone


def _detection_figure(columns: dict[str, float], drops: dict[str, float]):
    plt = pyplot()
    names = sorted(columns, key=columns.get)
    fig, axes = plt.subplots(1, 2, figsize=(8, 0.28 * len(names) + 1.2), dpi=90, sharey=True)
    y = np.arange(len(names))
    axes[0].barh(y, [columns[n] - 0.5 for n in names], left=0.5, color=_SYN)
    axes[0].axvline(COLUMN_TELL, color="#cf222e", ls="--", lw=1)
    axes[0].set_xlim(0.5, 1.0)
    axes[0].set_xlabel("single-column detection AUC")
    axes[0].set_yticks(y, names, fontsize=7)
    axes[1].barh(y, [max(drops.get(n, 0.0), 0.0) for n in names], color=_REAL)
    axes[1].set_xlabel("joint detector: AUC drop when shuffled")
    fig.tight_layout()
    return fig


def detection_section(detection: dict[str, Any]) -> list[str]:
    """Why rows are told apart: each column's single-column detection AUC and the joint
    detector's most important columns (:func:`synthgen.validation.detection.explain_detection`)."""
    columns = detection.get("columns") or {}
    if not columns:
        return []
    drops = {f["column"]: f["auc_drop"] for f in detection.get("top_features", [])}
    tells = [c for c, auc in columns.items() if auc > COLUMN_TELL]
    lead = (f"Columns that give rows away on their own (AUC above {COLUMN_TELL}): "
            f"{', '.join(html.escape(c) for c in tells)}. Look at their distributions below: a value "
            "grid, a point mass (0, -1, 999) or a range the generator misses, or set it in data.structure."
            if tells else f"No column gives rows away on its own (every single-column AUC is at most {COLUMN_TELL}); "
            "the joint detector's top columns show where the combinations differ.")
    rows = [[c, columns[c], drops.get(c, 0.0), "yes" if columns[c] > COLUMN_TELL else ""]
            for c in sorted(columns, key=lambda c: -drops.get(c, 0.0))]
    return ["<h2>Why rows are told apart</h2>", f"<p>{lead}</p>",
            f'<img alt="detection by column" src="data:image/png;base64,{png(_detection_figure(columns, drops))}">',
            html_table(rows, ["column", "single-column AUC", "joint AUC drop when shuffled", "gives rows away"])]


def _synthetic_figure(synthetic: pd.Series, kind: str):
    """One column of the synthetic table alone: level shares (its 15 most frequent levels)
    or a 30-bin density histogram; bins and levels come from the synthetic values."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4, 2.6), dpi=90)
    if kind in ("categorical", "boolean"):
        freq = synthetic.astype(str).value_counts(normalize=True).iloc[:15]
        x = np.arange(len(freq))
        ax.bar(x, freq.to_numpy(), 0.6, label="synthetic", color=_SYN)
        ax.set_xticks(x, [lvl[:12] for lvl in freq.index], rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("share")
    else:
        values = synthetic.dropna()
        values = values.astype("int64") / 1e9 if kind == "datetime" else values.astype(float)
        ax.hist(values, bins=30, density=True, alpha=0.8, label="synthetic", color=_SYN)
        ax.set_ylabel("density")
    ax.set_title(f"{synthetic.name} (synthetic)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _summary(validation: dict[str, Any], losses: pd.DataFrame | None, title: str) -> list[str]:
    """The sections both reports share: verdict, checks, metrics, privacy figures, losses."""
    passed = bool(validation.get("passed"))
    metrics = validation.get("metrics", {})
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="verdict {"pass" if passed else "fail"}">Verdict: {"PASSED" if passed else "REJECTED"}</p>',
        "<h2>Checks</h2>",
        html_table(
            [[c["name"], c.get("kind", ""), c["value"], c["threshold"], "pass" if c["passed"] else "FAIL"]
             for c in validation.get("checks", [])],
            ["metric", "kind", "value", "threshold", "result"],
        ),
        "<h2>Metrics</h2>",
        html_table([[k, v] for k, v in metrics.items() if not k.startswith(_PRIVACY_PREFIXES)], ["metric", "value"]),
    ]
    privacy = [[k, v] for k, v in metrics.items() if k.startswith(_PRIVACY_PREFIXES)]
    parts += ["<h2>Privacy</h2>"]
    parts += [html_table(privacy, ["metric", "value"])] if privacy else ["<p>No privacy figures were computed.</p>"]
    if metrics.get("epsilon_spent") is not None:
        parts.append(f"<p>Differential privacy: &epsilon; spent = {metrics['epsilon_spent']:.4g}.</p>")
    if losses is not None and not losses.empty:
        parts += ["<h2>Training</h2>", f'<img alt="loss curves" src="data:image/png;base64,{png(loss_figure(losses))}">']
    return parts


def _page(title: str, parts: list[str]) -> str:
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}.verdict{font-size:1.4em;font-weight:bold}"
        ".pass{color:#1a7f37}.fail{color:#cf222e}.grid img{margin:4px}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )


def build_report(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    validation: dict[str, Any],
    losses: pd.DataFrame | None = None,
    title: str = "synthgen trust report",
) -> str:
    """The full HTML trust report for the data owner, as a string (every figure embedded).

    It shows the real train split (per-column real-vs-synthetic distributions), so it stays
    in the run directory; ``published/`` gets :func:`build_public_report` instead.

    Args:
        real: the real train split.
        synthetic: the synthetic table.
        schema: the table schema (chooses how each column is drawn).
        validation: the ``validation.json`` payload (verdict, metrics, checks, details).
        losses: per-epoch losses (``epoch`` plus ``loss*`` columns), if any. Default None.
        title: page title. Default ``"synthgen trust report"``.
    """
    fidelity = validation.get("fidelity", {})
    column_scores = fidelity.get("columns", {})
    modelled = [c for c in schema.columns if c.modelled]
    parts = _summary(validation, losses, title)
    parts += detection_section(validation.get("detection", {}))
    if len(modelled) >= 2 and fidelity.get("pairs"):
        heat = _pair_heatmap([c.name for c in modelled], fidelity["pairs"])
        parts += ["<h2>Column pairs</h2>", f'<img alt="pair-trend heatmap" src="data:image/png;base64,{png(heat)}">']
    parts.append("<h2>Columns</h2><div class='grid'>")
    for spec in modelled:
        fig = _column_figure(real[spec.name], synthetic[spec.name], spec.kind, column_scores.get(spec.name))
        parts.append(f'<img alt="column {html.escape(spec.name)}" src="data:image/png;base64,{png(fig)}">')
    parts.append("</div>")
    return _page(title, parts)


def build_public_report(
    synthetic: pd.DataFrame,
    schema: TableSchema,
    validation: dict[str, Any],
    losses: pd.DataFrame | None = None,
    title: str = "synthgen trust report",
) -> str:
    """The public HTML trust report, built from no real row (it takes no real data).

    Verdict, checks, metrics, privacy figures and loss curves as in :func:`build_report`,
    then each modelled column's distribution in the synthetic table alone, and a sentence
    saying the real-vs-synthetic comparison is in the run directory for the data owner.
    This is the ``report.html`` that ``published/`` carries.

    Args:
        synthetic: the synthetic table.
        schema: the table schema (chooses how each column is drawn).
        validation: the ``validation.json`` payload (only verdict, checks and metrics are shown).
        losses: per-epoch losses (``epoch`` plus ``loss*`` columns), if any. Default None.
        title: page title. Default ``"synthgen trust report"``.
    """
    modelled = [c for c in schema.columns if c.modelled]
    parts = _summary(validation, losses, title)
    parts.append(public_note("the per-column real-vs-synthetic distributions and the pair-trend heatmap"))
    parts.append("<h2>Synthetic columns</h2><div class='grid'>")
    for spec in modelled:
        fig = _synthetic_figure(synthetic[spec.name], spec.kind)
        parts.append(f'<img alt="synthetic column {html.escape(spec.name)}" src="data:image/png;base64,{png(fig)}">')
    parts.append("</div>")
    return _page(title, parts)
