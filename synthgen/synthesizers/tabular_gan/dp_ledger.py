"""What a differentially private ``tabular_gan`` fit declares public and what it keeps
with the model: the pieces of the privacy ledger that depend on the table
(:func:`public_items`, :func:`counts_what`) and the schema saved beside a DP model
(:func:`public_schema`). The ledger itself is
:meth:`synthgen.training.dp.CriticPrivacy.ledger`.

Everything here reads only the schema (declared public by ``data.public_bounds``) and the
released noisy level counts; nothing reads the real rows.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from synthgen.data.schema import TableSchema
from synthgen.transformers.mode_normalizer import ModeNormalizer
from synthgen.data.structure import public_structure
from synthgen.transformers.prepare import MISSING_SUFFIX, NAN, TablePreparer

PUBLIC_SOURCE = "data.public_bounds"


def public_items(schema: TableSchema, preparer: TablePreparer, n_rows: int) -> list[dict[str, Any]]:
    """The ledger's ``public`` list: per column its domain (level count, "may be missing",
    a constant's value, fresh ids) or its bounds (``value: [min, max]``), then the row
    count; each with ``source: "data.public_bounds"``."""
    items: list[dict[str, Any]] = []
    for spec in schema.columns:
        item = {"column": spec.name, "what": "domain", "source": PUBLIC_SOURCE}
        missing = "; may be missing" if spec.missing_rate > 0 else ""
        if spec.kind == "id":
            items.append({**item, "detail": "fresh keys; no value is used"})
        elif spec.kind == "constant":
            items.append({**item, "detail": f"the constant value {spec.constant!r}, refilled"})
        elif spec.discrete:
            items.append({**item, "detail": f"{len(preparer.public_domain(spec))} levels{missing}"})
        else:
            items.append({**item, "what": "bounds", "value": [float(spec.min), float(spec.max)]})
            if missing:
                items.append({**item, "detail": "may be missing"})
            shown = public_structure(spec.structure)
            if shown:
                items.append({**item, "what": "value structure", "value": shown})
    items.append({"column": None, "what": "row count", "value": int(n_rows), "source": PUBLIC_SOURCE})
    return items


def counts_what(normalizer: ModeNormalizer) -> str:
    """The ``what`` of the level-count release: which columns and flags it covers."""
    flags = [c for c in normalizer.discrete_columns_ if c.endswith(MISSING_SUFFIX)]
    cols = [c for c in normalizer.discrete_columns_ if c not in flags]
    return (f"the counts of every level of {len(cols) + len(flags)} discrete columns ({', '.join(cols) or 'none'}"
            + (f"; missing flags {', '.join(flags)}" if flags else "") + "), missing levels included, so the "
            "missing rates are released here; they set the generator's condition frequencies")


def released_missing_rates(schema: TableSchema, normalizer: ModeNormalizer, counts: np.ndarray) -> dict[str, float]:
    """Each possibly missing column's missing share in the released noisy ``counts`` (wide
    order after ``disc_start``, clipped at 0): post-processing of the release."""
    out: dict[str, float] = {}
    for spec in schema.columns:
        col, level = (spec.name, NAN) if spec.discrete else (f"{spec.name}{MISSING_SUFFIX}", "1")
        if col not in normalizer.levels_ or level not in normalizer.lookup_[col]:
            continue
        span = next(s for s in normalizer.spans if s.kind == "level" and s.column == col)
        start = span.start - normalizer.disc_start
        block = counts[start : start + span.size]
        pos = normalizer.level_position(col, level) - normalizer.disc_start
        out[spec.name] = float(counts[pos] / block.sum()) if block.sum() > 0 else 0.0
    return out


def public_schema(schema: TableSchema, normalizer: ModeNormalizer, counts: np.ndarray) -> TableSchema:
    """The schema kept with a DP model: levels in sorted order (not by frequency), no
    notes (they count pooled levels), and as ``missing_rate`` the share in the released
    noisy counts instead of the real rate, the value structure without its shares (only
    the point-mass values, the decimals and the ``at_most`` column, which a DP fit uses);
    bounds, kinds, dtypes and the row count stay (declared public)."""
    rates = released_missing_rates(schema, normalizer, counts)
    columns = [
        replace(spec, categories=sorted(spec.categories, key=str) if spec.categories else spec.categories,
                note="", missing_rate=rates.get(spec.name, 0.0), structure=public_structure(spec.structure))
        for spec in schema.columns
    ]
    return replace(schema, columns=columns)
