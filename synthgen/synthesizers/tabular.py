"""What every table family shares: :class:`TabularSynthesizer`, the
:class:`~synthgen.synthesizers.base.Synthesizer` of ``data.kind: tabular``.

It checks the training table, prepares it (:class:`~synthgen.transformers.prepare.TablePreparer`),
restores dtypes on output, encodes conditions and records the schema and privacy
settings beside the model. A table family implements only:

* ``_fit(prepared, callbacks)`` - train on the prepared frame (its discrete columns are
  ``self.preparer_.discrete_columns``);
* ``_sample(n, rng, conditions)`` - return ``n`` prepared rows; ``conditions`` maps
  prepared column -> value (discrete) or ``(low, high)`` (numeric) and is given only
  to families with ``native_conditions = True``;
* ``_save(dir)`` / ``_load(dir)`` - persist the fitted networks and ``self.preparer_``
  (``_load`` sets ``self.preparer_``).

Families without native conditioning get bounded rejection sampling here.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from synthgen.config import ModelConfig, PrivacyConfig, TabularModelConfig
from synthgen.data.schema import TableSchema
from synthgen.errors import ConditionError, DataError, ModelError
from synthgen.synthesizers.base import Synthesizer
from synthgen.transformers.prepare import CONTINUOUS_STATE, MISSING_SUFFIX, POINT_SUFFIX, TablePreparer
from synthgen.transformers.values import fresh_ids

REJECTION_ROUNDS = 20  # rejection sampling gives up after this many batches


class TabularSynthesizer(Synthesizer):
    """Base class of table synthesizers.

    Args:
        schema: the table schema from ingest.
        config: the ``model`` section (only the table options are kept).
        privacy: the ``privacy`` section (families without DP refuse an epsilon).
        max_categories: levels kept per categorical (``data.max_categories``).
        checkpoint_dir: where families that checkpoint write and resume from; default
            ``None`` (no checkpoints).
    """

    data_kind: ClassVar[str] = "tabular"
    config_class: ClassVar[type[ModelConfig]] = TabularModelConfig
    fitted_attribute: ClassVar[str] = "preparer_"
    sample_unit: ClassVar[str] = "rows"
    native_conditions: ClassVar[bool] = False
    supports_privacy: ClassVar[bool] = False
    dp_sgd: ClassVar[bool] = False  # privacy by DP-SGD: takes privacy.noise_multiplier, max_grad_norm, ...
    joint_missing: ClassVar[bool] = True  # see TablePreparer
    point_states: ClassVar[bool] = True  # see TablePreparer

    def __init__(
        self,
        schema: TableSchema,
        config: ModelConfig | None = None,
        privacy: PrivacyConfig | None = None,
        max_categories: int = 500,
        checkpoint_dir: str | Path | None = None,
    ):
        super().__init__(config, checkpoint_dir)
        self.schema = schema
        self.privacy = privacy or PrivacyConfig()
        self.max_categories = max_categories
        if self.privacy.epsilon is not None and not self.supports_privacy:
            raise ModelError(
                f"privacy.epsilon is set but model.name={self.name!r} has no differential "
                "privacy; use a model that supports it or set privacy.epsilon: null"
            )

    # -- the base class's hooks ---------------------------------------------------------
    def _prepare(self, table: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.schema.names if c not in table.columns]
        if missing:
            raise DataError(f"training table lacks schema columns {missing}")
        if len(table) < 2:
            raise DataError(f"training table has {len(table)} rows; at least 2 are needed")
        self.preparer_ = TablePreparer(self.schema, self.max_categories, self.joint_missing,
                                       private=self.privacy.epsilon is not None,
                                       point_states=self.point_states).fit(table)
        prepared = self.preparer_.transform(table)
        self.n_train_ = len(table)
        return prepared

    def _draw(self, n: int, conditions: Mapping[str, Any] | None, rng: np.random.Generator) -> pd.DataFrame:
        """``n`` rows in the schema's column order and dtypes.

        ``conditions``: ``{column: value}`` every row must satisfy; a value may be a
        ``(low, high)`` pair for numeric columns (inclusive bounds).

        Raises:
            ConditionError: unknown column, unseen category, empty range, or (for
                families without native conditioning) a condition too rare to meet.
        """
        prepared_conditions = self._encode_conditions(conditions or {})
        if not prepared_conditions:
            prepared = self._sample(n, rng, None)
        elif self.native_conditions:
            prepared = self._sample(n, rng, prepared_conditions)
        else:
            prepared = self._rejection_sample(n, rng, prepared_conditions)
        ranges = {c: v for c, v in prepared_conditions.items() if isinstance(v, tuple)}
        return self.preparer_.inverse_transform(prepared.reset_index(drop=True), rng, protect=conditions or {},
                                                bounds=ranges)

    def _finish_chunk(self, part: pd.DataFrame, start: int) -> pd.DataFrame:
        """Fresh ids continue across chunks (``start + 1, ...``), as one pass numbers them."""
        ids = [c for c in self.schema.columns if c.kind == "id"]
        if start and ids:
            part = part.copy()
            for spec in ids:
                part[spec.name] = fresh_ids(spec, len(part), start).to_numpy()
        return part

    def _meta_fields(self) -> dict[str, Any]:
        return {
            "privacy": self.privacy.model_dump(),
            "max_categories": self.max_categories,
            "schema": self.schema.to_dict(),
        }

    @classmethod
    def _from_meta(cls, meta: dict[str, Any], config: ModelConfig) -> TabularSynthesizer:
        return cls(
            TableSchema.from_dict(meta["schema"]),
            config,
            PrivacyConfig(**meta["privacy"]),
            max_categories=meta["max_categories"],
        )

    # -- to implement ---------------------------------------------------------------
    @abstractmethod
    def _sample(self, n: int, rng: np.random.Generator, conditions: dict[str, Any] | None) -> pd.DataFrame: ...

    # -- helpers ----------------------------------------------------------------------
    def _encode_conditions(self, conditions: Mapping[str, Any]) -> dict[str, Any]:
        encoded: dict[str, Any] = {}
        for column, value in conditions.items():
            if column not in self.schema:
                raise ConditionError(f"condition on unknown column {column!r}; columns: {self.schema.names}")
            spec = self.schema[column]
            if not spec.modelled:
                raise ConditionError(f"column {column!r} is {spec.kind} and cannot be conditioned on")
            if spec.discrete:
                key = self.preparer_.encode_value(column, value)
                if key not in self.preparer_.kept_levels_[column]:
                    raise ConditionError(f"column {column!r} never had the value {value!r} in training")
                encoded[column] = key
            else:
                low, high = value if isinstance(value, (tuple, list)) else (value, value)
                low = self.preparer_.encode_value(column, low)
                high = self.preparer_.encode_value(column, high)
                if pd.isna(low) or pd.isna(high) or low > high:
                    raise ConditionError(f"condition on {column!r}: {value!r} is not a value or (low, high) range")
                if spec.max is not None and (low > spec.max or high < spec.min):
                    raise ConditionError(
                        f"condition on {column!r}: {value!r} lies outside the training range "
                        f"[{spec.min}, {spec.max}]"
                    )
                if spec.kind == "integer":  # bounds before rounding that round inside
                    low, high = np.ceil(low) - 0.49, np.floor(high) + 0.49
                encoded[column] = (float(low), float(high))
                flag = f"{column}{MISSING_SUFFIX}"
                if flag in self.preparer_.columns:  # a conditioned value is never missing
                    encoded[flag] = "0"
                masses = self.preparer_.state_columns.get(column, [])
                inside = [i for i, v in enumerate(masses) if low <= v <= high]
                if masses and not inside:  # only the continuous part can meet the range
                    encoded[f"{column}{POINT_SUFFIX}"] = CONTINUOUS_STATE
                elif masses and low == high:  # exactly a point mass
                    encoded[f"{column}{POINT_SUFFIX}"] = f"p{inside[0]}"
        return encoded

    def _rejection_sample(self, n: int, rng: np.random.Generator, conditions: dict[str, Any]) -> pd.DataFrame:
        kept: list[pd.DataFrame] = []
        have = 0
        batch = max(n, 1000)
        for _ in range(REJECTION_ROUNDS):
            draw = self._sample(batch, rng, None)
            mask = np.ones(len(draw), dtype=bool)
            for column, target in conditions.items():
                if isinstance(target, tuple):
                    values = pd.to_numeric(draw[column], errors="coerce").to_numpy()
                    mask &= (values >= target[0]) & (values <= target[1])
                else:
                    mask &= draw[column].astype(str).to_numpy() == target
            kept.append(draw[mask])
            have += int(mask.sum())
            if have >= n:
                return pd.concat(kept, ignore_index=True).iloc[:n]
        raise ConditionError(
            f"model {self.name!r} produced only {have} of {n} rows meeting {dict(conditions)} in "
            f"{REJECTION_ROUNDS * batch} draws; the condition is too rare for rejection sampling "
            "(use model.name: tabular_gan for exact conditional sampling)"
        )
