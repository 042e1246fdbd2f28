"""Figure helpers every report shares: matplotlib set up headless, PNG embedding, loss
curves, HTML tables. (The labelled image grid is :func:`synthgen.data.images.sample_grid`.)
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import pandas as pd

from synthgen.io import atomic_path


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_figure(losses: pd.DataFrame):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for column in losses.columns:
        if column != "epoch" and column.startswith("loss"):
            ax.plot(losses["epoch"], losses[column], label=column)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("Training losses")
    ax.legend(loc="best")
    fig.tight_layout()
    return fig


def plot_losses(losses: pd.DataFrame, path: str | Path) -> Path:
    """Loss curves (columns starting with ``loss``) against epoch, saved as PNG."""
    path = Path(path)
    fig = loss_figure(losses)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    pyplot().close(fig)
    return path


def png(fig) -> str:
    """A figure as base64 PNG text for an <img src=data:...>; closes the figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def html_table(rows: list[list[Any]], header: list[str]) -> str:
    """An HTML table; floats shown to 4 significant digits, text escaped."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return html.escape(str(value))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def public_note(comparison: str) -> str:
    """The public reports' sentence saying where the real-vs-synthetic ``comparison`` is.

    ``comparison`` names what the full report shows and this one leaves out, e.g.
    ``"the real train images"``; the sentence points to ``report.html`` in the run directory.
    """
    return (
        "<p class='note'>This report is built from the synthetic data and the validation figures "
        "only: it shows no real record. The real-vs-synthetic comparison "
        f"({html.escape(comparison)}) is in <code>report.html</code> in the run directory, "
        "for the data owner.</p>"
    )
