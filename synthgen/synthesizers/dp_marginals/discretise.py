"""Discretisation of ``dp_marginals``: each modelled column of the prepared frame becomes one
attribute with a finite *public* domain, and codes become prepared rows again.

Only public information decides the domains (the schema, declared public under
``data.public_bounds``, as read by a ``private`` :class:`~synthgen.transformers.prepare.TablePreparer`):

* a categorical or boolean column: its schema levels in sorted order, plus the missing
  level ``__nan__`` when the schema says it may be missing;
* a numeric column (continuous, integer, datetime in epoch seconds): ``bins`` equal-width
  bins over its public range ``[min, max]`` (``model.bins``; unset: by the rows, see
  :func:`~synthgen.synthesizers.dp_marginals.options.default_bins`),
  then one level per public point mass (exact values such as 0), then a missing level when
  the column may be missing. An integer column is binned over ``[min - 0.5, max + 0.5]``
  with at most one bin per integer, so a range of at most ``bins`` integers gets one bin
  each. A column modelled as its ratio to the column bounding it is binned over ``[0, 1]``.

No real value is read to choose an edge or a level: the real rows pass through
:meth:`Discretiser.encode` only, whose codes feed the measurements. Decoding
(:meth:`Discretiser.decode`) draws a numeric value uniformly within its bin (within a
conditioned range's part of it), a point mass exactly, and a missing level as the missing
flag; the preparer then restores integers, decimals and dtypes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from synthgen.errors import ConditionError, DataError
from synthgen.transformers.prepare import CONTINUOUS_STATE, MISSING_SUFFIX, POINT_SUFFIX, TablePreparer

DEFAULT_BINS = 20  # equal-width bins per numeric column (model.bins)


@dataclass
class Attribute:
    """One discretised column.

    Attributes:
        name: the prepared (and schema) column.
        levels: a discrete column's prepared levels (empty for numbers).
        edges: a numeric column's bin edges (``bins + 1`` values; empty for levels).
        points: a numeric column's point masses (prepared units), one level each after the bins.
        missing: a numeric column has a missing level (its ``<name>__missing`` flag), last.
        ratio: the column is modelled as its ratio to another (no range conditions).
    """

    name: str
    levels: list[str] = field(default_factory=list)
    edges: list[float] = field(default_factory=list)
    points: list[float] = field(default_factory=list)
    missing: bool = False
    ratio: bool = False

    @property
    def numeric(self) -> bool:
        return bool(self.edges)

    @property
    def n_bins(self) -> int:
        return len(self.edges) - 1 if self.edges else 0

    @property
    def size(self) -> int:
        """The number of codes of this attribute."""
        if not self.numeric:
            return len(self.levels)
        return self.n_bins + len(self.points) + int(self.missing)

    @property
    def missing_code(self) -> int | None:
        """The code of the missing level, if any."""
        if not self.numeric:
            return self.levels.index("__nan__") if "__nan__" in self.levels else None
        return self.size - 1 if self.missing else None

    def describe(self) -> str:
        """The domain in words, for the ledger's ``public`` list."""
        if not self.numeric:
            return f"{len(self.levels)} levels"
        parts = [f"{self.n_bins} equal-width bins over [{self.edges[0]:.6g}, {self.edges[-1]:.6g}]"]
        if self.points:
            parts.append(f"{len(self.points)} point masses")
        if self.missing:
            parts.append("a missing level")
        return ", ".join(parts)


def numeric_edges(low: float, high: float, bins: int, integer: bool) -> list[float]:
    """Equal-width edges over ``[low, high]``: ``bins`` bins, or for an ``integer`` column at
    most one per integer, over ``[low - 0.5, high + 0.5]``."""
    if integer:
        count = int(min(bins, round(high - low) + 1))
        return list(np.linspace(low - 0.5, high + 0.5, count + 1))
    if high <= low:
        return [float(low), float(low)]
    return list(np.linspace(low, high, bins + 1))


class Discretiser:
    """Prepared frame <-> integer codes over public domains (see the module docstring).

    Args:
        preparer: a fitted ``private`` preparer (its schema and levels are public).
        bins: bins per numeric column. Default :data:`DEFAULT_BINS`.
    """

    def __init__(self, preparer: TablePreparer, bins: int = DEFAULT_BINS):
        self.bins = int(bins)
        self.attributes: list[Attribute] = []
        for spec in (c for c in preparer.schema.columns if c.modelled):
            if spec.discrete:
                self.attributes.append(Attribute(spec.name, levels=list(preparer.kept_levels_[spec.name])))
                continue
            ratio = spec.name in preparer.bounds
            low, high = (0.0, 1.0) if ratio else (float(spec.min), float(spec.max))
            integer = spec.kind == "integer" and not ratio
            self.attributes.append(Attribute(
                spec.name, edges=[float(e) for e in numeric_edges(low, high, self.bins, integer)],
                points=[float(v) for v in preparer.state_columns.get(spec.name, [])],
                missing=spec.name in preparer.missing_cols_, ratio=ratio))

    @property
    def sizes(self) -> list[int]:
        return [a.size for a in self.attributes]

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.attributes]

    # -- forward ------------------------------------------------------------------------
    def encode(self, prepared: pd.DataFrame) -> np.ndarray:
        """The ``(rows, attributes)`` codes of a prepared frame.

        Raises:
            DataError: a discrete value outside the public domain.
        """
        codes = np.empty((len(prepared), len(self.attributes)), dtype=np.int64)
        for j, attr in enumerate(self.attributes):
            if not attr.numeric:
                cat = pd.Categorical(prepared[attr.name].astype(str), categories=attr.levels)
                if (cat.codes < 0).any():
                    raise DataError(f"column {attr.name!r}: values outside its public domain")
                codes[:, j] = cat.codes
                continue
            values = prepared[attr.name].to_numpy(dtype=float)
            edges = np.asarray(attr.edges)
            code = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, attr.n_bins - 1)
            state = f"{attr.name}{POINT_SUFFIX}"
            if attr.points and state in prepared:
                kind = prepared[state].astype(str).to_numpy()
                at_point = kind != CONTINUOUS_STATE
                code[at_point] = attr.n_bins + np.array([int(s[1:]) for s in kind[at_point]], dtype=np.int64)
            if attr.missing:
                code[prepared[f"{attr.name}{MISSING_SUFFIX}"].astype(str).to_numpy() == "1"] = attr.size - 1
            codes[:, j] = code
        return codes

    # -- backward -----------------------------------------------------------------------
    def decode(self, codes: np.ndarray, rng: np.random.Generator,
               ranges: dict[str, tuple[float, float]] | None = None) -> pd.DataFrame:
        """The prepared frame of ``codes``: levels as strings, numbers uniform within their
        bin (and within ``ranges[column]``, prepared units, where given), point masses
        exactly, missing levels as flags (value: the bin midpoint of the range, unused)."""
        ranges = ranges or {}
        out: dict[str, Any] = {}
        for j, attr in enumerate(self.attributes):
            code = codes[:, j]
            if not attr.numeric:
                out[attr.name] = np.asarray(attr.levels, dtype=object)[code]
                continue
            edges = np.asarray(attr.edges)
            in_bin = code < attr.n_bins
            b = np.minimum(code, attr.n_bins - 1)
            low, high = edges[b], edges[b + 1]
            if attr.name in ranges:
                lo, hi = ranges[attr.name]
                low, high = np.clip(low, lo, hi), np.clip(high, lo, hi)
            values = low + rng.random(len(code)) * (high - low)
            if attr.points:
                point = (~in_bin) & (code < attr.n_bins + len(attr.points))
                idx = np.clip(code - attr.n_bins, 0, len(attr.points) - 1)
                values = np.where(point, np.asarray(attr.points)[idx], values)
                out[f"{attr.name}{POINT_SUFFIX}"] = np.where(point, np.char.add("p", idx.astype(str)),
                                                               CONTINUOUS_STATE).astype(object)
            if attr.missing:
                missing = code == attr.size - 1
                values = np.where(missing, (edges[0] + edges[-1]) / 2, values)
                out[f"{attr.name}{MISSING_SUFFIX}"] = np.where(missing, "1", "0").astype(object)
            out[attr.name] = values
        return pd.DataFrame(out)

    # -- conditions ---------------------------------------------------------------------
    def condition_weights(
        self, conditions: dict[str, Any],
    ) -> tuple[dict[int, np.ndarray], dict[str, tuple[float, float]]]:
        """Per attribute, the share of each code that meets the prepared ``conditions``
        (``{column: level}``, ``{column: (low, high)}``, ``{<col>__missing: "0"}``,
        ``{<col>__point: state}``, as :class:`~synthgen.synthesizers.tabular.TabularSynthesizer`
        encodes them): 1 or 0 for levels and point masses, the share of a bin inside a range
        (the value is uniform within its bin); a zero-width range keeps the bin holding it.

        Returns:
            ``({attribute index: weights}, {column: (low, high)})``.

        Raises:
            ConditionError: a range condition on a column modelled as a ratio to another.
        """
        index = {a.name: j for j, a in enumerate(self.attributes)}
        weights: dict[int, np.ndarray] = {}
        ranges: dict[str, tuple[float, float]] = {}

        def restrict(j: int, w: np.ndarray) -> None:
            weights[j] = weights.get(j, np.ones(self.attributes[j].size)) * w

        for column, target in conditions.items():
            if column in index:
                j, attr = index[column], self.attributes[index[column]]
                if not attr.numeric:
                    restrict(j, (np.asarray(attr.levels) == str(target)).astype(float))
                    continue
                if attr.ratio:
                    raise ConditionError(f"condition on {column!r}: the column is modelled as its ratio to "
                                         "another, so dp_marginals cannot condition on its range")
                lo, hi = float(target[0]), float(target[1])
                ranges[column] = (lo, hi)
                edges = np.asarray(attr.edges)
                width = np.diff(edges)
                overlap = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, None)
                share = np.where(width > 0, overlap / np.where(width > 0, width, 1.0), 0.0)
                if hi - lo <= 0 or not (share > 0).any():  # a point: the bin holding it
                    share = np.zeros(attr.n_bins)
                    if edges[0] <= lo <= edges[-1]:
                        share[min(int(np.searchsorted(edges, lo, side="right")) - 1, attr.n_bins - 1)] = 1.0
                points = [1.0 if lo <= v <= hi else 0.0 for v in attr.points]
                restrict(j, np.concatenate([share, points, [0.0] * int(attr.missing)]))
            elif column.endswith(MISSING_SUFFIX) and column[: -len(MISSING_SUFFIX)] in index:
                j = index[column[: -len(MISSING_SUFFIX)]]
                attr = self.attributes[j]
                w = np.ones(attr.size)
                if str(target) == "0":
                    w[-1] = 0.0
                else:
                    w[:-1] = 0.0
                restrict(j, w)
            elif column.endswith(POINT_SUFFIX) and column[: -len(POINT_SUFFIX)] in index:
                j = index[column[: -len(POINT_SUFFIX)]]
                attr = self.attributes[j]
                w = np.zeros(attr.size)
                if str(target) == CONTINUOUS_STATE:
                    w[: attr.n_bins] = 1.0
                else:
                    w[attr.n_bins + int(str(target)[1:])] = 1.0
                restrict(j, w)
            else:
                raise ConditionError(f"condition on {column!r}: not a column of this model")
        return weights, ranges

    # -- persistence --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (no pickle)."""
        return {"bins": self.bins, "attributes": [asdict(a) for a in self.attributes]}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Discretiser:
        """The discretiser :meth:`to_dict` described.

        Raises:
            KeyError, TypeError, ValueError: a corrupt record.
        """
        out = cls.__new__(cls)
        out.bins = int(state["bins"])
        out.attributes = []
        for raw in state["attributes"]:
            attr = Attribute(name=str(raw["name"]), levels=[str(v) for v in raw["levels"]],
                             edges=[float(v) for v in raw["edges"]], points=[float(v) for v in raw["points"]],
                             missing=bool(raw["missing"]), ratio=bool(raw["ratio"]))
            if attr.size < 1 or (attr.numeric and attr.n_bins < 1) or not all(math.isfinite(e) for e in attr.edges):
                raise ValueError(f"attribute {attr.name!r}: empty domain or bad edges")
            out.attributes.append(attr)
        return out
