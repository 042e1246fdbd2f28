"""The pipeline's stages, one protocol for every data kind: ingest -> train -> generate ->
validate, and augment after train.

Each stage is a function of the validated :class:`~synthgen.config.Params`; the CLI
(``synthgen <stage>``), the DVC stages (which call the CLI) and the Prefect flows call the
functions here, which dispatch on ``data.kind`` through :data:`MODALITIES` to the table
(:mod:`synthgen.stages.tabular`, :mod:`synthgen.stages.augment_tabular`) or image
(:mod:`synthgen.stages.images`, :mod:`synthgen.stages.augment_images`) implementation.
Everything the two share lives in :mod:`synthgen.stages.common`.

Example::

    from synthgen.config import load_params
    from synthgen import stages

    params = load_params("params.yaml")
    stages.check(params)
    report = stages.run(params)  # ingest, train, generate, validate

Under ``torchrun`` (``WORLD_SIZE > 1``) only the train stage runs, in every process
(:func:`check_distributed`): rank 0 holds the lock and writes, the other ranks train
beside it without locking or writing (:mod:`synthgen.training.distributed`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthgen.config import TABLE_MAX, TABLE_MIN, Params
from synthgen.config import load_params as read_params
from synthgen.errors import ConfigError
from synthgen.io import output_lock
from synthgen.stages import augment_images, augment_tabular, images, tabular
from synthgen.stages.common import ImageLayout
from synthgen.synthesizers import REGISTRY, check_model
from synthgen.training.device import resolve_device
from synthgen.training.distributed import env_rank, env_world_size, launched, session

log = logging.getLogger(__name__)

STAGE_NAMES = ("ingest", "train", "generate", "validate", "augment")

#: ``privacy`` keys that only DP-SGD (``tabular_gan``) reads.
DP_SGD_KEYS = frozenset({"noise_multiplier", "max_grad_norm", "accountant", "grad_sample_mode"})

#: ``data.kind`` -> stage name -> implementation.
MODALITIES: dict[str, dict[str, Callable[..., dict[str, Any]]]] = {
    "tabular": {"ingest": tabular.ingest, "train": tabular.train, "generate": tabular.generate,
                "validate": tabular.validate, "augment": augment_tabular.augment},
    "image": {"ingest": images.ingest, "train": images.train, "generate": images.generate,
              "validate": images.validate, "augment": augment_images.augment},
}


def check(params: Params, source: str = "params") -> None:
    """Checks of the whole config that need the synthesizer registry (``model.name`` and
    its data kind), run before any stage does work.

    Raises:
        ConfigError: an unknown model, or a model of the other data kind; a family that is
            differentially private only (``requires_privacy``, e.g. ``dp_marginals``)
            without ``privacy.epsilon``; a DP-SGD key (:data:`DP_SGD_KEYS`) set for a
            family without DP-SGD;
            ``validate.privacy_filter`` set together with ``privacy.epsilon`` (the filter
            reads the real training rows after the DP fit, so the data it keeps would no
            longer be covered by the differential-privacy guarantee).
    """
    check_model(params.model.name, params.data.kind, source)
    if getattr(REGISTRY[params.model.name], "requires_privacy", False) and params.privacy.epsilon is None:
        raise ConfigError(
            f"{source}: privacy.epsilon is not set, but model.name {params.model.name!r} is differentially "
            "private and needs a budget: set privacy.epsilon (e.g. --set privacy.epsilon=3)"
        )
    sgd_keys = sorted(DP_SGD_KEYS & params.privacy.model_fields_set)
    if sgd_keys and params.privacy.epsilon is not None and not getattr(REGISTRY[params.model.name], "dp_sgd", False):
        raise ConfigError(
            f"{source}: privacy.{sgd_keys[0]} is a setting of DP-SGD, which model.name {params.model.name!r} does "
            "not use (it calibrates its own noise to privacy.epsilon); remove it, or set model.name: tabular_gan "
            "for the DP-SGD GAN (privacy.epsilon without model.name runs dp_marginals)"
        )
    if params.validate_.privacy_filter is not None and params.privacy.epsilon is not None:
        raise ConfigError(
            f"{source}: validate.privacy_filter is set together with privacy.epsilon: the filter drops "
            "synthetic rows by their distance to real training rows after the DP fit, so its output would "
            "no longer be covered by the differential-privacy guarantee; set validate.privacy_filter: null "
            "(or privacy.epsilon: null for a run without DP)"
        )


def check_distributed(command: str, params: Params) -> None:
    """Under torchrun (``WORLD_SIZE > 1``): only ``train``, of a family that trains through
    the shared loop, without differential privacy. A no-op in one process.

    Raises:
        ConfigError: another command, ``ctgan`` (an external package with its own
            loop), or ``privacy.epsilon`` set (the accountant counts one process's steps).
    """
    if not launched():
        return
    world = env_world_size()
    if command != "train":
        raise ConfigError(f"synthgen {command} runs in one process, not under torchrun (WORLD_SIZE={world}): "
                          "only `synthgen train` is distributed; run ingest before it and generate, "
                          "validate after it without torchrun")
    if not getattr(REGISTRY[params.model.name], "supports_distributed", False):
        raise ConfigError(f"model.name: {params.model.name} does not train under torchrun (WORLD_SIZE={world}); "
                          "use tabular_gan (or image_cgan for images), or train in one process")
    if params.privacy.epsilon is not None:
        raise ConfigError(f"privacy.epsilon with WORLD_SIZE={world}: the privacy accountant counts the noisy "
                          "steps of one process, so a multi-process run would spend more than it reports; "
                          "train with differential privacy in one process (no torchrun)")


def load_params(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """Read, validate and :func:`check` a params file: every config error surfaces here,
    before any work starts (errors name the file and key)."""
    params = read_params(path, overrides)
    check(params, source=str(path))
    return params


def stage(name: str, params: Params) -> Callable[..., dict[str, Any]]:
    """The implementation of stage ``name`` for ``params.data.kind`` (config checked first),
    run while this process holds the writer lock of ``output.dir`` (:func:`locked`)."""
    check(params)
    check_distributed(name, params)
    implementation = MODALITIES[params.data.kind][name]

    def run_locked(*args: Any) -> dict[str, Any]:
        with locked(params, f"synthgen {name}"), session(resolve_device(params.model.device)):
            return implementation(*args)

    return run_locked


def locked(params: Params, command: str = "synthgen run") -> contextlib.AbstractContextManager[Path]:
    """The writer lock of ``output.dir`` (:func:`synthgen.io.output_lock`): one process writes
    a run directory at a time; re-entrant, so a flow holding it runs its stages under it.
    Under torchrun only rank 0 takes it (the other ranks write nothing): elsewhere a no-op.

    Raises:
        BusyError: another process is writing ``output.dir`` (exit 2, naming it).
    """
    if launched() and env_rank() != 0:
        return contextlib.nullcontext(Path(params.out))
    return output_lock(params.out, command)


def ingest(params: Params) -> dict[str, Any]:
    """Read ``data.path``, infer and save the schema, write the train and holdout splits."""
    return stage("ingest", params)(params)


def train(params: Params) -> dict[str, Any]:
    """Fit ``model.name`` on the train split; save ``model/``, ``losses.csv`` and track the run."""
    return stage("train", params)(params)


def generate(params: Params) -> dict[str, Any]:
    """Draw ``generate.rows`` synthetic rows (images) from the saved model."""
    return stage("generate", params)(params)


#: ``data.kind`` -> the default floors and ceilings a partial ``validate.min`` / ``max`` merges with.
DEFAULT_THRESHOLDS: dict[str, tuple[dict[str, float], dict[str, float]]] = {
    "tabular": (TABLE_MIN, TABLE_MAX), "image": (images.IMAGE_MIN, images.IMAGE_MAX)}


def ingested(params: Params) -> bool:
    """Whether ``output.dir`` holds the ingest stage's schema and splits."""
    layout = ImageLayout(params.out)
    splits = ((layout.train_images, layout.holdout_images) if params.data.kind == "image"
              else (layout.train, layout.holdout))
    return all(path.is_file() for path in (layout.schema, *splits))


def validate(params: Params, synthetic: str | Path | None = None, out: str | Path | None = None) -> dict[str, Any]:
    """Score the synthetic data; write the verdict, manifest, report, datasheet (and
    ``published/`` on a pass). With ``synthetic`` a path: audit that data, write only the
    verdict; the real data is ingested first when ``output.dir`` has none yet.

    The thresholds are ``validate.min`` / ``validate.max`` merged over the data kind's
    defaults (:data:`DEFAULT_THRESHOLDS`): setting one metric never drops the others."""
    floors, ceilings = DEFAULT_THRESHOLDS[params.data.kind]
    params = params.model_copy(update={"validate_": params.validate_.with_defaults(floors, ceilings)})
    if synthetic is not None and not ingested(params):
        log.info("validate: %s has no ingested real data yet; running the ingest stage on %s first",
                 params.out, params.data.path)
        ingest(params)
    return stage("validate", params)(params, synthetic, out)


def augment(params: Params) -> dict[str, Any]:
    """Grow the real train split with conditional synthetic rows (images) and measure the benefit."""
    return stage("augment", params)(params)


def run(params: Params) -> dict[str, Any]:
    """All four pipeline stages in order; returns the validation report."""
    check(params)
    check_distributed("run", params)
    with locked(params):
        ingest(params)
        train(params)
        generate(params)
        return validate(params)
