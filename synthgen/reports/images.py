"""The image trust report: a self-contained HTML page with the verdict, its checks, the
metrics section of :mod:`synthgen.validation.images`, sample grids and the loss curves."""

from __future__ import annotations

import base64
import html
from typing import Any

import pandas as pd

def build_image_report(report: dict[str, Any], grid_png: bytes, real_png: bytes,
                       losses: pd.DataFrame | None, manifest: dict[str, Any]) -> str:
    """A self-contained HTML trust report: verdict, checks, metrics, sample grids, losses."""
    from synthgen.validation.images import image_report_html_section

    def img(data: bytes, alt: str) -> str:
        return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'

    checks = "".join(
        f"<tr><td>{html.escape(c['name'])}</td><td>{c['kind']}</td><td>{c['threshold']:.4g}</td>"
        f"<td>{'–' if c['value'] is None else format(c['value'], '.4g')}</td>"
        f"<td>{'pass' if c['passed'] else 'FAIL'}</td></tr>" for c in report["checks"])
    parts = [
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
        "<h2>Real train images</h2>", img(real_png, "real grid"),
    ]
    if losses is not None and not losses.empty:
        from synthgen.reports.figures import loss_figure, png

        parts += ["<h2>Training</h2>",
                  f'<img alt="losses" src="data:image/png;base64,{png(loss_figure(losses))}">']
        if "ada_p" in losses:
            last = losses.iloc[-1]
            parts.append(f"<p>ADA at the last epoch: p = {last['ada_p']:.3f}, r_t = {last.get('ada_rt', float('nan')):.3f}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
