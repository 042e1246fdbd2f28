"""The HTML section of an image report (:func:`image_report_html_section`).

Metric failures come first, under their own heading, and their rows are marked: a
generated set that scores better than real unseen images is shown as a metric that
cannot be trusted here, not as good news. The judge's training size is stated beside
the metrics computed in its features.
"""

from __future__ import annotations

import base64
import html
from typing import Any

_DESCRIPTIONS = {
    "image_detection_auc": "classifier tells generated from real holdout images (0.5 = cannot, 1 = always)",
    "fid_random": "Fréchet distance, fixed random CNN features (not trained; lower is better)",
    "kid_random": "kernel distance (MMD²), random CNN features (≈ 0 for a real draw)",
    "precision_random": "generated images inside the real manifold, random CNN features",
    "recall_random": "real images inside the generated manifold, random CNN features",
    "coverage_random": "real neighbourhoods holding a generated image, random CNN features",
    "fid_pixel": "Fréchet distance, pixels + HOG features (lower is better)",
    "kid_pixel": "kernel distance (MMD²), pixels + HOG features",
    "precision_pixel": "generated images inside the real manifold, pixels + HOG",
    "recall_pixel": "real images inside the generated manifold, pixels + HOG",
    "coverage_pixel": "real neighbourhoods holding a generated image, pixels + HOG",
    "fid_domain": "Fréchet distance in the judge's features (trained on train; can be fooled)",
    "kid_domain": "kernel distance in the judge's features (≈ 0 for a real draw)",
    "generated_class_accuracy": "judge says the image is of the class it was generated for",
    "tstr_accuracy": "classifier trained on generated images, accuracy on the real holdout",
    "real_accuracy": "classifier trained on real train images, accuracy on the real holdout",
    "precision": "generated images inside the real manifold, judge features (fidelity)",
    "recall": "real images inside the generated manifold, judge features (diversity)",
    "density": "k-NN density of generated images in the real manifold, judge features (≈ 1 real)",
    "coverage": "real neighbourhoods that hold a generated image, judge features",
    "memorization_ratio": "median NN distance to train, generated / holdout (≈ 1 fresh, 0 copies)",
    "memorization_share": "generated closer to train than 1% of holdout images are (≈ 0.01)",
    "exact_copies": "generated images identical to a train image",
    "exact_copy_rate": "share of generated images identical to a train image",
    "metric_failures": "metrics on which generated beats real unseen images (should be 0)",
}


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def _failures(details: dict[str, Any]) -> list[str]:
    failures = details.get("metric_failures") or []
    if not failures:
        return []
    items = "".join(f"<li><b>{html.escape(f['name'])}</b>: {html.escape(f['reason'])}</li>" for f in failures)
    return [f"<h3>Metric failures ({len(failures)}): these metrics cannot be trusted here</h3>",
            "<p>The generated images score better than real images the generator never saw. That is not "
            "quality: it means copies of train images, or features blind to what the generator gets "
            f"wrong.</p><ul>{items}</ul>"]


def _judge_note(details: dict[str, Any]) -> str:
    judge = details.get("judge") or {}
    if not judge:
        return ""
    return (f"<p>The judge CNN behind fid_domain, kid_domain, precision, recall, density, coverage and "
            f"generated_class_accuracy was trained on {_fmt(judge.get('train_images'))} real train images "
            f"(task {html.escape(str(judge.get('task')))}, {_fmt(judge.get('steps'))} steps): it sees what "
            "separates those classes, not everything a person sees. image_detection_auc and the _random / _pixel "
            "metrics use nothing trained on the train split.</p>")


def _per_class(details: dict[str, Any]) -> str:
    per_class = details.get("image_detection_auc_per_class") or {}
    if not per_class:
        return ""
    cells = "".join(f"<td>{html.escape(c)}: {_fmt(v)}</td>" for c, v in per_class.items())
    return f"<p>image_detection_auc per class (– = too few images):</p><table><tr>{cells}</tr></table>"


def image_report_html_section(report: dict[str, Any], grid_png: bytes | None = None,
                              title: str = "Generated images") -> str:
    """An HTML fragment: metric failures first, then the metrics of
    :func:`~synthgen.validation.images.report.image_report` beside the holdout baseline
    (failed ones marked), the judge's training size, per-class detection, and an optional
    sample grid (PNG bytes, inlined as base64)."""
    details = report.get("details", {})
    baseline = details.get("baseline", {})
    failed = {f["name"] for f in details.get("metric_failures") or []}

    def row(name: str, value: Any) -> str:
        mark = " <b>METRIC FAILURE: cannot be trusted here</b>" if name in failed else ""
        reference = "0.5 (chance)" if name == "image_detection_auc" else _fmt(baseline.get(name))
        return (f"<tr><td>{html.escape(name)}</td><td>{_fmt(value)}{mark}</td><td>{reference}</td>"
                f"<td>{html.escape(_DESCRIPTIONS.get(name, ''))}</td></tr>")

    rows = "".join(row(name, value) for name, value in report["metrics"].items())
    parts = [f"<section><h2>{html.escape(title)}</h2>", *_failures(details),
             "<table><tr><th>metric</th><th>generated</th><th>holdout (real)</th><th>meaning</th></tr>",
             rows, "</table>", _judge_note(details), _per_class(details)]
    if grid_png is not None:
        parts.append(f'<img alt="sample grid" src="data:image/png;base64,{base64.b64encode(grid_png).decode()}">')
    parts.append("</section>")
    return "\n".join(p for p in parts if p)
