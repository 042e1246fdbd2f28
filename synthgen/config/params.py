"""The sections of ``params.yaml`` other than ``model``, the whole (:class:`Params`) and its
loading: one typed model per section, validated once at the edge; unknown keys are errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from synthgen.config.base import MAX_SEED, ColumnKind, Section
from synthgen.config.model import ModelSection
from synthgen.errors import ConfigError


class DataConfig(Section):
    """``data``: what to read and how to split it (the ingest stage)."""

    path: str  # CSV, Parquet, or (kind: image) a folder / .npz
    kind: Literal["tabular", "image"] = "tabular"
    target: str | None = None  # column used for stratified split and utility metrics
    holdout: float = Field(0.2, gt=0.0, lt=0.9)  # share of rows never trained on
    seed: int = Field(0, ge=0, le=MAX_SEED)  # seed of the train/holdout split
    encoding: str = "utf-8"  # CSV text encoding
    id_columns: list[str] = []  # not modelled, regenerated as fresh ids; surrogate keys replace them at ingest
    columns: dict[str, ColumnKind] = {}  # overrides of inferred column kinds
    max_categories: int = Field(500, ge=2)  # rarer levels are pooled while training
    # min_level_count: categorical levels seen fewer times than this (default 10) in the train split
    # are pooled into one level "__rare__" at ingest, before schema, model, MLflow or reports see them; 1: off
    min_level_count: int = Field(10, ge=1)
    # value structure of numeric columns (synthgen/data/structure.py): a value holding at least this
    # share of a column (and seen min_level_count times) is a point mass the generator chooses exactly
    point_mass_share: float = Field(0.01, gt=0.0, le=1.0)
    structure: dict[str, Any] = {}  # per column: off, or {point_masses: [...], decimals: d, at_most: col}
    public_bounds: bool = True  # category sets and ranges are treated as public (see privacy)
    # kind: image only (see synthgen/data/images.py)
    # every image is resized to image_size x image_size (a power of two, 8-256); null or auto: the
    # power of two nearest the images' median side, 8-64 px (logged; synthgen/data/image_size.py)
    image_size: int | None = None
    channels: Literal[1, 3] | None = None  # 1 grayscale, 3 RGB; null: 1 when every image is grayscale

    @field_validator("structure")
    @classmethod
    def _structure_entries(cls, entries: dict[str, Any]) -> dict[str, Any]:
        for column, entry in entries.items():
            if entry == "off":
                continue
            if not isinstance(entry, dict) or not entry or set(entry) - {"point_masses", "decimals", "at_most"}:
                raise ValueError(f"{column}: expected off or {{point_masses: [...], decimals: d, at_most: column}}, "
                                 f"got {entry!r}")
            if not isinstance(entry.get("at_most", ""), str):
                raise ValueError(f"{column}.at_most: expected a column name, got {entry['at_most']!r}")
            masses = entry.get("point_masses", [])
            if not isinstance(masses, list) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in masses):
                raise ValueError(f"{column}.point_masses: expected a list of numbers, got {masses!r}")
            decimals = entry.get("decimals", 0)
            if decimals is not None and (isinstance(decimals, bool) or not isinstance(decimals, int)
                                         or not 0 <= decimals <= 6):
                raise ValueError(f"{column}.decimals: expected null or a whole number 0-6, got {decimals!r}")
        return entries

    @field_validator("image_size", mode="before")
    @classmethod
    def _auto_size(cls, size: Any) -> Any:
        return None if isinstance(size, str) and size.strip().lower() == "auto" else size

    @field_validator("image_size")
    @classmethod
    def _power_of_two(cls, size: int | None) -> int | None:
        if size is None:
            return None
        if size < 8 or size > 256 or size & (size - 1):
            raise ValueError(f"must be a power of two from 8 to 256, got {size}")
        return size
class PrivacyConfig(Section):
    """``privacy``: differential privacy for the critic; off while ``epsilon`` is null."""

    epsilon: float | None = Field(None, gt=0)
    delta: float | None = Field(None, gt=0, lt=1)  # default: 1 / (10 * n_train)
    max_grad_norm: float = Field(1.0, gt=0)
    accountant: Literal["rdp", "prv"] = "rdp"  # Opacus accountant of the spent epsilon
    noise_multiplier: float | None = Field(None, gt=0, le=1000)  # null: calibrated so model.epochs spend epsilon
    grad_sample_mode: Literal["ghost", "hooks", "functorch", "ew"] = "ghost"  # Opacus per-sample mode


class GenerateConfig(Section):
    """``generate``: how many synthetic rows to draw."""

    rows: int | None = Field(None, ge=1)  # default: as many as the training split
    seed: int | None = Field(None, ge=0, le=MAX_SEED)  # default: model.seed
    conditions: dict[str, Any] = {}  # column -> value every generated row must satisfy


#: The default floors and ceilings of a table's verdict (``validate.min`` / ``validate.max``).
TABLE_MIN: dict[str, float] = {"quality_score": 0.6, "gx_success_rate": 0.8}
TABLE_MAX: dict[str, float] = {"exact_copy_rate": 0.05, "dcr_overfitting_share": 0.6, "mia_auc": 0.75}


class ValidateConfig(Section):
    """``validate``: thresholds of the verdict. ``min`` are floors, ``max`` are ceilings; set ones
    merge over the data kind's defaults (:meth:`with_defaults`, applied by the validate stage):
    ``max: {mia_auc: 0.9}`` keeps the other privacy ceilings. Relax one by setting it (``mia_auc: 1``)."""

    min: dict[str, float] = dict(TABLE_MIN)
    max: dict[str, float] = dict(TABLE_MAX)
    # great-expectations distribution checks (see synthgen.validation.gx_suite.Tolerances)
    mean_tolerance: float = Field(0.3, ge=0)  # synthetic mean within this many real std
    std_tolerance: float = Field(0.3, ge=0)  # synthetic std within real std x (1 -/+ this)
    median_tolerance: float = Field(0.4, ge=0)  # synthetic median within this many real std
    frequency_kl: float = Field(0.1, gt=0)  # KL(real || synthetic) of category frequencies, nats
    sensitive: list[str] = []  # columns scored for attribute-inference risk (attribute_risk_<col>)
    # privacy_filter: drop synthetic rows whose DCR to the real train rows is below this; default null (off).
    # Refused together with privacy.epsilon (ConfigError on load): it reads real rows after the DP fit,
    # so the data it keeps would no longer be covered by the DP guarantee.
    privacy_filter: float | None = Field(None, ge=0, le=1)

    def with_defaults(self, floors: dict[str, float], ceilings: dict[str, float]) -> ValidateConfig:
        """These thresholds merged over a data kind's defaults: each default floor and ceiling
        stays unless params set that metric (a partial ``min`` / ``max`` never drops the rest)."""
        own_min = self.min if "min" in self.model_fields_set else {}
        own_max = self.max if "max" in self.model_fields_set else {}
        return self.model_copy(update={"min": {**floors, **own_min}, "max": {**ceilings, **own_max}})


class AugmentConfig(Section):
    """``augment``: grow the real train split with conditional synthetic rows of ``data.target``.

    ``rebalance`` lifts every class to ``ratio`` x the majority class count; ``enlarge``
    adds ``factor - 1`` times the train split, stratified by class. The benefit is measured
    over ``seeds`` repeats against the untouched holdout (see synthgen/stages/augment_tabular.py).
    """

    mode: Literal["rebalance", "enlarge"] = "rebalance"  # how many synthetic rows per class
    ratio: float = Field(1.0, gt=0, le=10)  # rebalance: each class up to round(ratio x majority count)
    factor: float = Field(2.0, ge=1, le=100)  # enlarge: augmented rows = round(factor x labelled train rows)
    seed: int = Field(0, ge=0, le=MAX_SEED)  # seed of the written synthetic draw; benefit repeat i uses seed + i
    seeds: int = Field(5, ge=1, le=100)  # benefit repeats (synthetic draw and downstream model vary)
    benefit: bool = True  # measure real-only vs real+synthetic downstream models on the holdout
    models: list[Literal["logistic", "random_forest", "hist_gbm"]] = Field(
        ["logistic", "random_forest"], min_length=1)  # downstream scikit-learn classifiers
    minority: str | None = None  # class whose recall is reported; null: the rarest train class


class TrackingConfig(Section):
    """``tracking``: where MLflow runs go; set ``uri`` to a team server to share."""

    uri: str | None = "sqlite:///mlflow.db"  # null disables tracking
    experiment: str = "synthgen"
    registered_model: str | None = None  # registry name of the generator; auto: from data.path; null: not registered
    model_alias: str | None = "candidate"  # alias the validate stage sets on each new version (registered with its verdict)
    champion_alias: str | None = "champion"  # alias validate moves to a version whose verdict passed; null: never
    parent_run: str | None = None  # MLflow run id this pipeline's run nests under (set by sweeps); null: top level


_CONSTRAINT = re.compile(r"^\s*(<=|>=|<|>|==)\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$")


def parse_constraint(text: str) -> tuple[str, float]:
    """``"<= 0.6"`` -> ``("<=", 0.6)``; operators ``<=``, ``>=``, ``<``, ``>``, ``==``.

    Raises:
        ValueError: not an operator followed by a number.
    """
    match = _CONSTRAINT.match(str(text))
    if not match:
        raise ValueError(f"constraint {text!r}: expected an operator and a number, e.g. '<= 0.6'")
    return match.group(1), float(match.group(2))


class SelectRule(Section):
    """``sweep.select``: how the best grid point is chosen (see :func:`synthgen.stages.sweep.select`)."""

    maximize: str | None = "quality_score"  # metric to maximize; exactly one of maximize / minimize
    minimize: str | None = None  # metric to minimize instead
    subject_to: dict[str, str] = {"mia_auc": "<= 0.6"}  # metric -> "<= x" | ">= x" | "< x" | "> x" | "== x"
    require_passed: bool = False  # only points whose validation verdict passed are eligible

    @field_validator("subject_to")
    @classmethod
    def _constraints(cls, value: dict[str, str]) -> dict[str, str]:
        for text in value.values():
            parse_constraint(text)
        return value

    @model_validator(mode="before")
    @classmethod
    def _minimize_replaces_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("minimize") is not None and "maximize" not in data:
            data = {**data, "maximize": None}  # `minimize: x` alone replaces the default objective
        return data

    @model_validator(mode="after")
    def _one_objective(self) -> SelectRule:
        if (self.maximize is None) == (self.minimize is None):
            raise ValueError("set exactly one of maximize and minimize")
        return self


class SweepConfig(Section):
    """``sweep``: a grid of params run as one pipeline per point (``pipelines/sweep_flow.py``).

    Each grid key is a ``section.key`` of params.yaml, as in ``--set``; the points are the
    cartesian product of the value lists, in the order written.
    """

    grid: dict[str, list[Any]] = {}  # e.g. {"model.epochs": [50, 150], "privacy.epsilon": [null, 3]}
    select: SelectRule = SelectRule()  # rule that picks the best point
    privacy_axis: Literal["mia_auc", "epsilon_spent"] = "mia_auc"  # x axis of the frontier plot (lower: more private)
    address: str | None = None  # Dask scheduler address (tcp://host:8786); null: a LocalCluster
    workers: int = Field(2, ge=1)  # LocalCluster workers (points trained at once)
    processes: bool = True  # LocalCluster workers as processes (false: threads in this process)
    dir: str | None = None  # where points and the comparison go; null: <output.dir>/sweep

    @field_validator("grid")
    @classmethod
    def _grid_keys(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in grid.items():
            section = key.split(".")[0]
            if len(key.split(".")) < 2 or section in ("sweep", "output"):
                raise ValueError(f"grid key {key!r}: expected section.key of a stage section, e.g. model.epochs")
            if not values:
                raise ValueError(f"grid key {key!r}: needs at least one value")
        return grid


class OutputConfig(Section):
    """``output``: where every artifact of a run is written."""

    dir: str = "outputs/demo"


#: ``model.name`` of a table run with ``privacy.epsilon`` set and no ``model.name`` given.
PRIVATE_DEFAULT_MODEL = "dp_marginals"


class Params(Section):
    """The whole of ``params.yaml``."""

    data: DataConfig
    model: ModelSection = ModelSection()
    privacy: PrivacyConfig = PrivacyConfig()
    generate: GenerateConfig = GenerateConfig()
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    augment: AugmentConfig = AugmentConfig()
    tracking: TrackingConfig = TrackingConfig()
    output: OutputConfig = OutputConfig()
    sweep: SweepConfig = SweepConfig()

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _private_default(self) -> Params:
        # privacy.epsilon on a table, model.name not given: the private family the benchmark
        # ranks first (BENCHMARKS.md, "Private synthetic tables"); a named model is kept
        named = "name" in self.model.model_fields_set
        if self.privacy.epsilon is not None and self.data.kind == "tabular" and not named:
            self.model.name = PRIVATE_DEFAULT_MODEL
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict with the same keys as params.yaml."""
        return json.loads(self.model_dump_json(by_alias=True))

    def flat(self) -> dict[str, Any]:
        """``{"model.epochs": 300, ...}``: the form MLflow params and ``--set`` use."""
        return {f"{section}.{key}": value
                for section, values in self.to_dict().items() for key, value in values.items()}

    @property
    def out(self) -> Path:
        return Path(self.output.dir)


def _apply_override(raw: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. model.epochs=3")
    key, _, text = item.partition("=")
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"--set {key!r}: expected section.key, e.g. model.epochs")
    section_name = parts[0]
    if section_name not in Params.model_fields and section_name != "validate":
        raise ConfigError(f"--set {key}: unknown section {section_name!r}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    node = raw
    for depth, part in enumerate(parts[:-1]):
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parts[:depth + 1])!r} is not a section")
    node[parts[-1]] = value


def _shown(part: Any) -> str:
    """A key as messages show it: quoted when it is empty, padded or holds unprintable characters."""
    text = str(part)
    return text if text and text.isprintable() and text.strip() == text else repr(text)


def parse_params(raw: dict[str, Any], source: str = "params") -> Params:
    """Validate a params dict; errors name the source and the key at fault."""
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(_shown(p) for p in first["loc"]) or "(top level)"
        msg = first["msg"]
        if first["type"] == "extra_forbidden":
            msg = "unknown key"
        elif first["type"] == "missing":
            msg = "required key is missing"
        raise ConfigError(f"{source}: {key}: {msg}") from None


def load_params(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """Read a params YAML file, apply ``key=value`` overrides, validate.

    Raises:
        ConfigError: the file is missing or not YAML, a key is unknown, or a value is
            invalid; the message names the file and key.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    for item in overrides:
        _apply_override(raw, item)
    return parse_params(raw, source=str(path))
