"""The image trust reports: self-contained HTML pages with the verdict, its checks, the
metrics section of :mod:`synthgen.validation.images`, sample grids and the loss curves.

Look before you trust: the numbers come with pictures a person can judge.

* :func:`build_image_report` - the full report (``report.html`` in the run directory), for
  the data owner: besides the synthetic sample grid it shows a grid of real **holdout**
  images (what the classes really look like; never trained on) and the nearest-neighbour
  pairs of :func:`neighbour_grid` (generated images closest to a train image, each beside
  that train image: memorisation at a glance).
* :func:`build_public_image_report` - the public report (``published/report.html``): the
  same page without any real image (it takes no real image argument); it says where the
  real-vs-synthetic comparison is.
"""

from __future__ import annotations

import base64
import html
from typing import Any

import numpy as np
import pandas as pd

from synthgen.data.images import sample_grid
from synthgen.reports.figures import loss_figure, png, public_note


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _head(report: dict[str, Any], grid_png: bytes, manifest: dict[str, Any]) -> list[str]:
    """Title, verdict, run facts, checks, and the metrics with the synthetic sample grid."""
    from synthgen.validation.images import image_report_html_section

    checks = "".join(
        f"<tr><td>{html.escape(c['name'])}</td><td>{c['kind']}</td><td>{c['threshold']:.4g}</td>"
        f"<td>{'–' if c['value'] is None else format(c['value'], '.4g')}</td>"
        f"<td>{'pass' if c['passed'] else 'FAIL'}</td></tr>" for c in report["checks"])
    return [
        "<!doctype html><html><head><meta charset='utf-8'><title>synthgen image report</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td,th{padding:2px 8px;"
        "border-bottom:1px solid #ddd;text-align:left}img{image-rendering:pixelated;margin:4px}</style></head><body>",
        f"<h1>Synthetic images: {'PASSED' if report['passed'] else 'REJECTED'}</h1>",
        f"<p>{manifest.get('rows')} images of {html.escape(str(manifest.get('image_shape')))} from "
        f"{html.escape(str(manifest.get('model')))} (augment {html.escape(str(manifest.get('augment')))}); "
        f"seed {manifest.get('seed')}.</p>",
        "<h2>Checks</h2><table><tr><th>metric</th><th>kind</th><th>threshold</th><th>value</th><th></th></tr>",
        checks or "<tr><td colspan=5>no thresholds set</td></tr>", "</table>",
        image_report_html_section(report, grid_png),
    ]


def _training(losses: pd.DataFrame | None) -> list[str]:
    """The loss curves and the last ADA probability, when there are losses."""
    if losses is None or losses.empty:
        return []
    parts = ["<h2>Training</h2>", f'<img alt="losses" src="data:image/png;base64,{png(loss_figure(losses))}">']
    if "ada_p" in losses:
        last = losses.iloc[-1]
        parts.append(f"<p>ADA at the last epoch: p = {last['ada_p']:.3f}, r_t = {last.get('ada_rt', float('nan')):.3f}</p>")
    return parts


def neighbour_grid(generated: np.ndarray, train: np.ndarray, nearest: list[dict[str, Any]]) -> bytes | None:
    """A PNG of nearest-neighbour pairs: one row per entry of ``nearest`` (the report's
    ``details.memorization.nearest``, closest first), the generated image on the left and
    its nearest train image (pixel L2) on the right, rows numbered from 1. None when
    ``nearest`` is empty."""
    if not nearest:
        return None
    pairs = np.stack([img for p in nearest for img in (generated[p["generated"]], train[p["train"]])])
    return sample_grid(pairs, np.repeat(np.arange(1, len(nearest) + 1), 2), nrow=2)


def _neighbours(report: dict[str, Any], neighbours_png: bytes | None) -> list[str]:
    if neighbours_png is None:
        return []
    memorization = report.get("details", {}).get("memorization", {})
    distances = ", ".join(f"{i}: {p['distance']:.3g}" for i, p in enumerate(memorization.get("nearest", []), 1))
    typical = memorization.get("pixel", {}).get("median_holdout")
    holdout = "" if typical is None else (f" A median holdout image lies {typical:.3g} from its nearest train image: "
                                         "pairs far closer than that, or identical, are copies.")
    return ["<h2>Nearest train images (memorisation)</h2>",
            "<p>The generated images closest to a train image (left), each beside that train image (right), "
            f"closest first; pixel L2 distances (pixels in [0, 1]): {html.escape(distances)}.{holdout}</p>",
            _img(neighbours_png, "nearest train neighbours")]


def build_image_report(report: dict[str, Any], grid_png: bytes, holdout_png: bytes,
                       losses: pd.DataFrame | None, manifest: dict[str, Any],
                       neighbours_png: bytes | None = None) -> str:
    """The full HTML trust report for the data owner: verdict, checks, metrics, the synthetic
    sample grid, a grid of real holdout images (``holdout_png``, from
    :func:`~synthgen.data.images.sample_grid`), the nearest-neighbour pairs
    (``neighbours_png``, from :func:`neighbour_grid`; default None = left out), losses.

    It shows real images, so it stays in the run directory; ``published/`` gets
    :func:`build_public_image_report` instead.
    """
    parts = [*_head(report, grid_png, manifest),
             "<h2>Real holdout images</h2><p>Real images the generator never saw, for comparison with the "
             "generated grid above.</p>", _img(holdout_png, "real holdout grid"),
             *_neighbours(report, neighbours_png), *_training(losses), "</body></html>"]
    return "\n".join(parts)


def build_public_image_report(report: dict[str, Any], grid_png: bytes, losses: pd.DataFrame | None,
                              manifest: dict[str, Any]) -> str:
    """The public HTML trust report, built from no real image (it takes none): verdict,
    checks, metrics with the synthetic sample grid (``grid_png``), losses, and a sentence
    saying the real holdout grid and the nearest-train-image pairs are in the run
    directory's ``report.html``."""
    parts = [*_head(report, grid_png, manifest),
             public_note("a grid of real holdout images and the nearest train image of generated ones"),
             *_training(losses), "</body></html>"]
    return "\n".join(parts)
