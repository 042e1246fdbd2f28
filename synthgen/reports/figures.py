"""Figure helpers every report shares: matplotlib set up headless, PNG embedding, loss
curves, HTML tables, and the labelled image grid (the PNG the image reports and the
sample-grid callback show).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthgen.errors import DataError
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


def sample_grid(images: np.ndarray, labels: Sequence[int] | np.ndarray | None = None,
                path: str | Path | None = None, nrow: int = 10, *, min_cell: int = 32) -> bytes:
    """A PNG grid of images, one row per class when labels are given.

    Args:
        images: uint8 N×H×W×C (C = 1 or 3) or N×H×W.
        labels: int class per image, or None. With labels, each row shows the first
            ``nrow`` images of one class (classes sorted), the class written at the left.
        path: where to write the PNG too (atomically); default None (only returned).
        nrow: images per row; default 10.
        min_cell: images are enlarged (nearest neighbour, integer factor) to at least
            this many pixels on their longer side; default 32.

    Returns:
        The PNG file's bytes (deterministic for the same input).
    """
    from PIL import Image, ImageDraw

    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or len(arr) == 0:
        raise DataError(f"sample_grid: expected a non-empty uint8 N×H×W(×C) array, got {arr.dtype} {arr.shape}")
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if nrow < 1:
        raise DataError(f"sample_grid: nrow must be at least 1, got {nrow}")
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape != (len(arr),):
            raise DataError(f"sample_grid: expected {len(arr)} labels, got shape {lab.shape}")
        rows = [(str(int(c)), arr[lab == c][:nrow]) for c in np.unique(lab)]
    else:
        rows = [("", arr[i:i + nrow]) for i in range(0, len(arr), nrow)]
    h, w = arr.shape[1:3]
    scale = max(1, math.ceil(min_cell / max(h, w)))
    pad = 2
    cell_h, cell_w = h * scale + pad, w * scale + pad
    margin = 8 + 7 * max(len(name) for name, _ in rows) if labels is not None else 0
    mode = "L" if arr.ndim == 3 else "RGB"
    grid = Image.new(mode, (margin + pad + nrow * cell_w, pad + len(rows) * cell_h),
                     color=255 if mode == "L" else (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for r, (name, row) in enumerate(rows):
        top = pad + r * cell_h
        if name:
            draw.text((4, top + cell_h // 2 - 6), name, fill=0 if mode == "L" else (0, 0, 0))
        for c, img in enumerate(row):
            tile = Image.fromarray(np.ascontiguousarray(img), mode=mode)
            grid.paste(tile.resize((w * scale, h * scale), Image.NEAREST), (margin + pad + c * cell_w, top))
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    data = buf.getvalue()
    if path is not None:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    return data
