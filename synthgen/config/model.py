"""The ``model`` section: the options every synthesizer family takes, each family's own
options (:class:`TabularModelConfig`, :class:`MarginalsModelConfig`, :class:`ImageModelConfig`),
the section that validates them together (:class:`ModelSection`) and the cut of one
family's options out of it (:func:`family_config`)."""

from __future__ import annotations

import logging
import re
import warnings
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, field_validator, model_validator

from synthgen.config.base import MAX_BATCH, MAX_SEED, MAX_WIDTH, Section

log = logging.getLogger(__name__)


#: ``model.checkpoint_every`` when params leave it unset: a checkpoint after every two minutes
#: of training (and after the last epoch). Writing one takes milliseconds for the table models
#: and well under a second for the image ones, so it costs under 1% of training time, and a
#: killed run loses at most two minutes of training.
DEFAULT_CHECKPOINT_EVERY = "2m"

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?)$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def checkpoint_interval(value: Any) -> tuple[int, float]:
    """``model.checkpoint_every`` as ``(epochs, seconds)`` between checkpoints; ``(0, 0.0)`` is off.

    Args:
        value: a whole number of epochs (``0``: no checkpoints), or a duration of training
            between checkpoints as a string: a number with ``s``, ``m``/``min`` or ``h``
            (``"90s"``, ``"2m"``, ``"1.5h"``); a string of digits counts epochs.

    Returns:
        ``(epochs, 0.0)`` for an epoch count, ``(0, seconds)`` for a duration.

    Raises:
        ValueError: anything else (a negative number, an unknown unit, a boolean).
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value, 0.0
    if isinstance(value, str):
        text = value.strip().lower()
        if text.isdigit():
            return int(text), 0.0
        match = _DURATION.match(text)
        if match:
            return 0, float(match.group(1)) * _UNIT_SECONDS[match.group(2)[0]]
    raise ValueError(f"expected a whole number of epochs (0 = no checkpoints) or a duration such as "
                     f"'90s', '2m' or '1h', got {value!r}")


class ModelConfig(Section):
    """``model``: the options every synthesizer family takes (the train stage).

    A family's own options live in its subclass (:class:`TabularModelConfig`,
    :class:`ImageModelConfig`); a family is given only its own options (see
    :func:`family_config`), so a table model never carries image options.
    """

    name: str = "tabular_gan"  # a key of synthgen.synthesizers.REGISTRY (validated there)
    epochs: int = Field(300, ge=1)  # unset: the family decides (ctgan 300; tabular_gan a 3000-step budget)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    batch_size: int = Field(500, ge=2, le=MAX_BATCH)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    generator_dim: list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]] = [256, 256]
    discriminator_dim: list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]] = [256, 256]
    embedding_dim: int = Field(128, ge=1, le=MAX_WIDTH)
    lr: float = Field(2e-4, gt=0, le=1)  # Adam's step size (torch overflows long before 1e300)
    # checkpoints (GANLoop): a whole number of epochs, or a duration ("90s", "2m", "1h") of training
    # between two; also after the last epoch; 0 = none. Default 2m (see checkpoint_interval)
    checkpoint_every: int | str = DEFAULT_CHECKPOINT_EVERY

    @field_validator("checkpoint_every", mode="before")
    @classmethod
    def _checkpoint_interval(cls, value: Any) -> int | str:
        checkpoint_interval(value)  # raises ValueError naming the accepted forms
        if isinstance(value, str):
            value = re.sub(r"\s+", "", value).lower()
            return int(value) if value.isdigit() else (0 if checkpoint_interval(value) == (0, 0.0) else value)
        return value


class TabularModelConfig(ModelConfig):
    """The options of the table families (``tabular_gan``, ``ctgan``)."""

    pac: int = Field(10, ge=1, le=128)  # rows the critic judges together (its input is pac rows wide)


class MarginalsModelConfig(TabularModelConfig):
    """The options of ``dp_marginals`` (synthgen/synthesizers/dp_marginals/); ``epochs`` caps its adaptive rounds."""
    bins: int | None = Field(None, ge=2, le=4096)  # equal-width bins per number over its public range; None: by rows
    max_order: Literal[2, 3] = 3  # the largest marginals the adaptive rounds may measure (2- or 3-way)


class ImageModelConfig(ModelConfig):
    """The options of ``image_cgan`` (see synthgen/synthesizers/image_cgan/, synthgen/training/disc_augment.py)."""

    name: str = "image_cgan"
    disc_augment: Literal["none", "diffaugment", "ada"] = "ada"  # augmentation at the discriminator input
    ada_target: float = Field(0.6, gt=0, lt=1)  # ADA: target of r_t = E[sign(D(real))]
    ada_kimg: float = Field(20.0, gt=0)  # ADA: p can move 1.0 per this many thousand real images (paper: 500)
    ada_interval: int = Field(4, ge=1)  # ADA: adjust p every this many steps
    ada_orientation: bool = True  # ADA: x-flips and rotations too (false for digits, text: they change the class)
    ema: float = Field(0.999, ge=0, lt=1)  # decay of the generator EMA used for sampling; 0 = off
    r1_gamma: float = Field(0.0, ge=0)  # R1 penalty weight on non-augmented reals; 0 = off
    sample_every: int = Field(0, ge=0)  # epochs between sample grids logged to MLflow; 0 = last epoch only


#: Keys renamed since 0.1.0: the old spelling still works, with a warning.
RENAMED_MODEL_KEYS = {"augment": "disc_augment"}


def _renamed(data: Any, quiet: bool = False) -> Any:
    if not isinstance(data, dict) or not any(old in data for old in RENAMED_MODEL_KEYS):
        return data
    data = dict(data)
    for old, new in RENAMED_MODEL_KEYS.items():
        if old not in data:
            continue
        value = data.pop(old)
        if new in data:
            raise ValueError(f"set {new} (the new name of {old}), not both")
        data[new] = value
        if not quiet:
            warnings.warn(f"model.{old} is deprecated; it is now model.{new}", FutureWarning, stacklevel=2)
    return data


class ModelSection(MarginalsModelConfig, ImageModelConfig):
    """The ``model`` section of params.yaml: every family's options, validated together.

    Unset fields stay unset (``model_fields_set``) so families apply their own defaults.
    """

    name: str = "tabular_gan"

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        return _renamed(data)


FamilyConfig = TypeVar("FamilyConfig", bound=ModelConfig)


def family_config(section: ModelConfig | dict[str, Any], config_class: type[FamilyConfig],
                  quiet: bool = False) -> FamilyConfig:
    """The options of one family out of a ``model`` section (or a saved model's config dict).

    Only the fields ``config_class`` has are kept, and only those set explicitly stay set,
    so the family's defaults fill the rest. An explicitly set option of another family is
    ignored with a warning (``quiet=True``: silently, as when loading a saved model).
    """
    if isinstance(section, dict):
        section = ModelSection.model_validate(_renamed(section, quiet=True))
    own = config_class.model_fields
    foreign = sorted(k for k in section.model_fields_set if k not in own)
    if foreign and not quiet:
        log.warning("model.%s: not an option of %s; ignored", ", model.".join(foreign), section.name)
    return config_class(**{k: getattr(section, k) for k in section.model_fields_set if k in own})
