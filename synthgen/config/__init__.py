"""Typed configuration: one model per ``params.yaml`` section, validated once at the edge.

``params.yaml`` has one section per pipeline stage (``data`` for ingest, ``model`` and
``privacy`` for train, ``generate``, ``validate``, ``augment``) plus the shared ``tracking`` and
``output`` sections, and ``sweep`` (a grid of params run by ``pipelines/sweep_flow.py``). Unknown keys are
errors, never silently ignored.

Example::

    params = load_params("params.yaml", ["model.epochs=3"])
    params.model.epochs  # -> 3

The package: :mod:`.base` (the strict section base, shared bounds), :mod:`.model` (the
``model`` section and each family's options), :mod:`.params` (the other sections,
:class:`Params`, :func:`load_params`).
"""

from synthgen.config.base import MAX_BATCH, MAX_SEED, MAX_WIDTH, ColumnKind, Section
from synthgen.config.model import (
    DEFAULT_CHECKPOINT_EVERY, RENAMED_MODEL_KEYS, ImageModelConfig, MarginalsModelConfig, ModelConfig, ModelSection,
    TabularModelConfig, checkpoint_interval, family_config,
)
from synthgen.config.params import (
    PRIVATE_DEFAULT_MODEL, TABLE_MAX, TABLE_MIN, AugmentConfig, DataConfig, GenerateConfig, OutputConfig, Params,
    PrivacyConfig, SelectRule, SweepConfig, TrackingConfig, ValidateConfig, load_params, parse_constraint,
    parse_params,
)

__all__ = [
    "DEFAULT_CHECKPOINT_EVERY", "MAX_BATCH", "MAX_SEED", "MAX_WIDTH", "PRIVATE_DEFAULT_MODEL", "RENAMED_MODEL_KEYS",
    "TABLE_MAX", "TABLE_MIN", "AugmentConfig", "ColumnKind", "DataConfig", "GenerateConfig", "ImageModelConfig",
    "MarginalsModelConfig", "ModelConfig", "ModelSection", "OutputConfig", "Params", "PrivacyConfig", "Section",
    "SelectRule", "SweepConfig", "TabularModelConfig", "TrackingConfig", "ValidateConfig", "checkpoint_interval",
    "family_config", "load_params", "parse_constraint", "parse_params",
]
