"""The synthesizer interface every tabular model family implements.

A template method, as in SDV: :class:`Synthesizer` checks input, prepares the table
(:class:`~synthgen.transformers.prepare.TablePreparer`), restores dtypes on output and
handles conditions and persistence. A family implements only:

* ``_fit(prepared, discrete_columns)`` - train on the prepared frame;
* ``_sample(n, rng, conditions)`` - return ``n`` prepared rows; ``conditions`` maps
  prepared column -> value (discrete) or ``(low, high)`` (numeric) and is given only
  to families with ``native_conditions = True``;
* ``_save(dir)`` / ``_load(dir)`` - persist the fitted networks.

Families without native conditioning get bounded rejection sampling here.
"""

from __future__ import annotations

import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from synthgen.config import ModelConfig, PrivacyConfig
from synthgen.data.schema import TableSchema
from synthgen.errors import ConditionError, DataError, ModelError
from synthgen.io import atomic_path
from synthgen.training.callbacks import Callback, CallbackList
from synthgen.transformers.prepare import MISSING_SUFFIX, TablePreparer

log = logging.getLogger(__name__)

META_FILE = "synthesizer.json"
_REJECTION_ROUNDS = 20  # rejection sampling gives up after this many batches


class Synthesizer(ABC):
    """Base class of tabular synthesizers.

    Args:
        schema: the table schema from ingest.
        config: the ``model`` section.
        privacy: the ``privacy`` section (families without DP refuse an epsilon).
        max_categories: levels kept per categorical (``data.max_categories``).
        checkpoint_dir: where families that checkpoint write and resume from; default
            ``None`` (no checkpoints).
    """

    name: ClassVar[str]
    native_conditions: ClassVar[bool] = False
    supports_privacy: ClassVar[bool] = False
    joint_missing: ClassVar[bool] = True  # see TablePreparer

    def __init__(
        self,
        schema: TableSchema,
        config: ModelConfig | None = None,
        privacy: PrivacyConfig | None = None,
        max_categories: int = 500,
        checkpoint_dir: str | Path | None = None,
    ):
        self.schema = schema
        self.checkpoint_dir = checkpoint_dir
        self.config = config or ModelConfig(name=self.name)
        self.privacy = privacy or PrivacyConfig()
        self.max_categories = max_categories
        if self.privacy.epsilon is not None and not self.supports_privacy:
            raise ModelError(
                f"privacy.epsilon is set but model.name={self.name!r} has no differential "
                "privacy; use a model that supports it or set privacy.epsilon: null"
            )

    # -- public API -------------------------------------------------------------------
    def fit(self, table: pd.DataFrame, callbacks: Sequence[Callback] = ()) -> Synthesizer:
        """Train on ``table`` (the real train split). Returns ``self``."""
        missing = [c for c in self.schema.names if c not in table.columns]
        if missing:
            raise DataError(f"training table lacks schema columns {missing}")
        if len(table) < 2:
            raise DataError(f"training table has {len(table)} rows; at least 2 are needed")
        self.preparer_ = TablePreparer(self.schema, self.max_categories, self.joint_missing).fit(table)
        prepared = self.preparer_.transform(table)
        self.n_train_ = len(table)
        self._resolve_config(len(prepared))
        cbs = CallbackList(callbacks)
        start = time.perf_counter()
        cbs.on_train_start(self)
        self._fit(prepared, self.preparer_.discrete_columns, cbs)
        self.train_seconds_ = time.perf_counter() - start
        cbs.on_train_end(self, {"train_seconds": self.train_seconds_})
        return self

    def sample(
        self,
        n: int,
        conditions: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> pd.DataFrame:
        """Draw ``n`` synthetic rows in the schema's column order and dtypes.

        Args:
            n: number of rows, at least 1.
            conditions: ``{column: value}`` every row must satisfy; a value may be a
                ``(low, high)`` pair for numeric columns (inclusive bounds).
            seed: seed of this draw; the same seed gives the same rows.

        Raises:
            ConditionError: unknown column, unseen category, empty range, or (for
                families without native conditioning) a condition too rare to meet.
        """
        self._check_fitted()
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ConditionError(f"number of rows must be a positive integer, got {n!r}")
        rng = np.random.default_rng(seed)
        prepared_conditions = self._encode_conditions(conditions or {})
        if not prepared_conditions:
            prepared = self._sample(int(n), rng, None)
        elif self.native_conditions:
            prepared = self._sample(int(n), rng, prepared_conditions)
        else:
            prepared = self._rejection_sample(int(n), rng, prepared_conditions)
        return self.preparer_.inverse_transform(prepared.reset_index(drop=True), rng, protect=conditions or {})

    def save(self, directory: str | Path) -> None:
        """Write the fitted synthesizer to ``directory`` (replaced atomically)."""
        self._check_fitted()
        with atomic_path(directory) as tmp:
            tmp.mkdir(parents=True)
            meta = {
                "name": self.name,
                "config": self.config.model_dump(),
                "privacy": self.privacy.model_dump(),
                "max_categories": self.max_categories,
                "schema": self.schema.to_dict(),
                "n_train": self.n_train_,
                "train_seconds": self.train_seconds_,
                "extra": self.extra_meta(),
            }
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
            self._save(tmp)

    @classmethod
    def load(cls, directory: str | Path) -> Synthesizer:
        """Load a synthesizer saved by :meth:`save` (any registered family)."""
        from synthgen.synthesizers import REGISTRY

        directory = Path(directory)
        meta_path = directory / META_FILE
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            raise ModelError(f"{directory}: not a synthgen model directory (no {META_FILE})") from None
        except json.JSONDecodeError as exc:
            raise ModelError(f"{meta_path}: corrupt ({exc})") from None
        family = REGISTRY.get(meta.get("name"))
        if family is None:
            raise ModelError(f"{meta_path}: unknown model {meta.get('name')!r}")
        if getattr(family, "loads_itself", False):  # image_cgan: its own format
            return family.load(directory)
        schema = TableSchema.from_dict(meta["schema"])
        model = family(
            schema,
            ModelConfig(**meta["config"]),
            PrivacyConfig(**meta["privacy"]),
            max_categories=meta["max_categories"],
        )
        model.n_train_ = meta["n_train"]
        model.train_seconds_ = meta["train_seconds"]
        model.preparer_ = model._load(directory)
        return model

    def _resolve_config(self, n_rows: int) -> None:
        """Settle settings that depend on the training table (called before training
        starts, so callbacks see the final ``config``). Default: nothing to settle."""

    def extra_meta(self) -> dict[str, Any]:
        """Family facts worth recording beside the model (e.g. epsilon spent)."""
        return {}

    # -- to implement ---------------------------------------------------------------
    @abstractmethod
    def _fit(self, prepared: pd.DataFrame, discrete_columns: list[str], callbacks: CallbackList) -> None: ...

    @abstractmethod
    def _sample(self, n: int, rng: np.random.Generator, conditions: dict[str, Any] | None) -> pd.DataFrame: ...

    @abstractmethod
    def _save(self, directory: Path) -> None:
        """Persist networks and the fitted ``self.preparer_``."""

    @abstractmethod
    def _load(self, directory: Path) -> TablePreparer:
        """Restore networks; return the fitted preparer."""

    # -- helpers ----------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "preparer_"):
            raise ModelError(f"{type(self).__name__} is not fitted; call fit() first")

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
        return encoded

    def _rejection_sample(self, n: int, rng: np.random.Generator, conditions: dict[str, Any]) -> pd.DataFrame:
        kept: list[pd.DataFrame] = []
        have = 0
        batch = max(n, 1000)
        for _ in range(_REJECTION_ROUNDS):
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
            f"{_REJECTION_ROUNDS * batch} draws; the condition is too rare for rejection sampling "
            "(use model.name: tabular_gan for exact conditional sampling)"
        )
