"""Plots people would rather look at than read."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def plot_losses(losses: pd.DataFrame, path: str | Path) -> Path:
    """Loss curves (every numeric column but ``epoch``) against epoch, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from synthgen.io import atomic_path

    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for column in losses.columns:
        if column != "epoch" and column.startswith("loss"):
            ax.plot(losses["epoch"], losses[column], label=column)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("Training losses")
    ax.legend(loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
