"""What every ``params.yaml`` section shares: the strict base model and the bounds of
numbers (seeds, widths, batches) that more than one section checks."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

ColumnKind = Literal["continuous", "integer", "categorical", "boolean", "datetime", "id"]
MAX_SEED = 2**31 - 1  # numpy, torch and scikit-learn take unsigned 32-bit seeds, and seed + i must fit too
MAX_WIDTH = 2**13  # the widest layer a model may ask for (generator_dim, discriminator_dim, embedding_dim)
MAX_BATCH = 2**16  # the largest model.batch_size (a batch of 10^9 rows asks torch for 64 GB at once)


class Section(BaseModel):
    """A params section: unknown keys are errors; inf and nan are refused in every number
    (a YAML ``.inf`` threshold or a ``1e400`` ``--set`` value)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
