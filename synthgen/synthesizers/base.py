"""The interface every synthesizer family implements, for tables and images alike.

A template method, as in SDV: :class:`Synthesizer` owns the public methods and the
steps every family shares; a family (or its data kind's intermediate class, e.g.
:class:`~synthgen.synthesizers.tabular.TabularSynthesizer`) fills in hooks:

* ``fit(data, callbacks)``: ``_prepare(data)`` checks the input and returns what
  training reads; ``_resolve_config(n)`` settles data-dependent settings; then the
  callbacks' ``on_train_start``, the timed ``_fit(prepared, callbacks)`` (recorded as
  ``train_seconds_``) and ``on_train_end``;
* ``sample(n, conditions, seed)``: checks the fitted state and ``n``, makes the draw's
  ``numpy`` generator from ``seed`` and returns ``_draw(n, conditions, rng)`` - in chunks
  of :attr:`Synthesizer.sample_chunk` records (``iter_sample`` yields them one by one),
  so memory beyond the result stays flat however large ``n`` is;
* ``save(dir)``: writes :data:`META_FILE` (``name``, ``format``, ``config``, the family's
  ``_meta_fields()``, ``n_train``, ``train_seconds``, ``extra``) and calls
  ``_save(dir)``, all in a directory replaced atomically;
* ``load(dir)`` (a classmethod): reads the meta, refuses an older synthgen's pickled
  format (:func:`~synthgen.synthesizers.persistence.check_format`), builds the unfitted
  object with :meth:`Synthesizer.unfitted_from_meta` (the family's options, then
  ``_from_meta(meta, config)``) and restores its fitted state with ``_load(dir)``. Loading
  a directory of any family by its meta ``name`` is :func:`synthgen.synthesizers.load`
  (the registry lives there, not here).

Chunked sampling: ``n`` records are drawn as ``ceil(n / sample_chunk)`` calls of
``_draw`` with one generator made from ``seed``, in order; ``_finish_chunk`` fixes what
depends on a record's position (a table's fresh ids continue across chunks). Draws of at
most :data:`SAMPLE_CHUNK` (50,000) records are one call, exactly as before chunking;
larger draws are deterministic for a seed and chunk size but not the records a single
pass would have drawn (every random draw is taken per chunk). After each chunk of a
multi-chunk draw the memory it freed goes back to the operating system
(:func:`release_freed_memory`), so the resident size stays flat, not at the allocator's
high-water mark.

``_save``/``_load`` write and read only JSON and plain tensor files
(:mod:`synthgen.synthesizers.persistence`): loading a model directory never runs code
from it.

Each family declares ``name``, ``data_kind`` (``"tabular"`` / ``"image"``) and
``config_class`` (the :class:`~synthgen.config.ModelConfig` subclass of its options);
:meth:`Synthesizer.own_config` picks those options out of any ``model`` section and
fills the unset ones from ``family_defaults``.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from synthgen.config import ModelConfig, family_config
from synthgen.errors import ConditionError, ModelError
from synthgen.io import atomic_path
from synthgen.synthesizers.persistence import FORMAT, FORMAT_KEY, check_format
from synthgen.training.callbacks import Callback, CallbackList

META_FILE = "synthesizer.json"
SAMPLE_CHUNK = 50_000  # records per pass of sample(): memory beyond the result is flat in n


def read_meta(directory: str | Path) -> dict[str, Any]:
    """The :data:`META_FILE` record of a saved model directory.

    Raises:
        ModelError: no such file (not a model directory), or it is not JSON.
    """
    directory = Path(directory)
    meta_path = directory / META_FILE
    try:
        return json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{directory}: not a synthgen model directory (no {META_FILE})") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{meta_path}: corrupt ({exc})") from None


def release_freed_memory() -> None:
    """Hand memory freed by a finished chunk back to the operating system (glibc's
    ``malloc_trim``; nothing elsewhere), so a long chunked draw keeps a flat resident size
    instead of the allocator's high-water mark."""
    global _TRIM
    if _TRIM is None:
        try:
            import ctypes

            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM: Any = None  # glibc's malloc_trim once looked up; False where there is none


class Synthesizer(ABC):
    """Base class of every synthesizer family.

    Args:
        config: the ``model`` section (any :class:`~synthgen.config.ModelConfig`); only
            this family's options are kept, unset ones take ``family_defaults``. Default
            ``None``: every option at its default.
        checkpoint_dir: where families that checkpoint write and resume from; default
            ``None`` (no checkpoints).
    """

    name: ClassVar[str]
    data_kind: ClassVar[str]  # "tabular" | "image": the data.kind it models
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    family_defaults: ClassVar[dict[str, Any]] = {}  # model.* of this family when params leave them unset
    fitted_attribute: ClassVar[str]  # set by fit and load; its absence means "not fitted"
    sample_unit: ClassVar[str] = "rows"  # what sample(n) counts, for messages
    sample_chunk: ClassVar[int] = SAMPLE_CHUNK  # records per _draw call of sample()/iter_sample()

    def __init__(self, config: ModelConfig | None = None, checkpoint_dir: str | Path | None = None):
        self.config = self.own_config(config)
        self.checkpoint_dir = checkpoint_dir

    def own_config(self, config: ModelConfig | None, with_defaults: bool = True) -> ModelConfig:
        """This family's options out of ``config`` (``None``: all defaults).

        With ``with_defaults`` (default), fields left unset take ``family_defaults``; the
        result then has every field explicitly set.
        """
        config = family_config(config if config is not None else self.config_class(name=self.name),
                               self.config_class)
        if with_defaults:
            unset = {k: v for k, v in self.family_defaults.items() if k not in config.model_fields_set}
            if unset:  # every field now explicitly set
                config = self.config_class(**config.model_copy(update=unset).model_dump())
        return config

    # -- public API -------------------------------------------------------------------
    def fit(self, data: Any, callbacks: Sequence[Callback] = ()) -> Synthesizer:
        """Train on ``data`` (the real train split). Returns ``self``."""
        prepared = self._prepare(data)
        self._resolve_config(len(prepared))
        cbs = CallbackList(callbacks)
        start = time.perf_counter()
        cbs.on_train_start(self)
        self._fit(prepared, cbs)
        self.train_seconds_ = time.perf_counter() - start
        cbs.on_train_end(self, {"train_seconds": self.train_seconds_})
        return self

    def sample(self, n: int, conditions: Mapping[str, Any] | None = None, seed: int | None = None) -> Any:
        """Draw ``n`` synthetic records; the same ``seed`` gives the same records.

        Records are drawn :attr:`sample_chunk` at a time (see the module docstring) and
        joined: memory holds the result and one chunk's work, not a pass over all ``n``.

        Raises:
            ModelError: not fitted.
            ConditionError: ``n`` is not a positive integer, or a bad condition.
        """
        parts = list(self.iter_sample(n, conditions, seed))
        return parts[0] if len(parts) == 1 else self._concat(parts)

    def iter_sample(self, n: int, conditions: Mapping[str, Any] | None = None, seed: int | None = None,
                    chunk: int | None = None) -> Iterator[Any]:
        """The records of :meth:`sample`, yielded in chunks of at most ``chunk`` (default
        :attr:`sample_chunk`); together they are what :meth:`sample` returns with the same
        ``chunk``. For writing large draws without holding them.

        Raises:
            ModelError: not fitted (raised here, before the first chunk is asked for).
            ConditionError: ``n`` or ``chunk`` is not a positive integer.
        """
        self._check_fitted()
        chunk = self.sample_chunk if chunk is None else chunk
        for value, what in ((n, f"number of {self.sample_unit}"), (chunk, "sample chunk")):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ConditionError(f"{what} must be a positive integer, got {value!r}")
        return self._chunks(int(n), conditions, np.random.default_rng(seed), int(chunk))

    def _chunks(self, n: int, conditions: Mapping[str, Any] | None, rng: np.random.Generator,
                chunk: int) -> Iterator[Any]:
        for start in range(0, n, chunk):
            part = self._finish_chunk(self._draw(min(chunk, n - start), conditions, rng), start)
            if n > chunk:
                release_freed_memory()
            yield part

    def save(self, directory: str | Path) -> None:
        """Write the fitted synthesizer to ``directory`` (replaced atomically)."""
        self._check_fitted()
        with atomic_path(directory) as tmp:
            tmp.mkdir(parents=True)
            meta = {
                "name": self.name,
                FORMAT_KEY: FORMAT,
                "config": self.config.model_dump(),
                **self._meta_fields(),
                "n_train": self.n_train_,
                "train_seconds": self.train_seconds_,
                "extra": self.extra_meta(),
            }
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
            self._save(tmp)

    @classmethod
    def load(cls, directory: str | Path) -> Synthesizer:
        """Load a model of this family saved by :meth:`save` (any family:
        :func:`synthgen.load`). Reads only JSON and plain tensors: nothing in the
        directory runs.

        Raises:
            ModelError: not a model directory of this family, an older synthgen's pickled
                model (convert it with ``synthgen upgrade-model``), or a file that is
                missing, corrupt or holds pickled objects.
        """
        directory = Path(directory)
        meta = read_meta(directory)
        check_format(meta, directory)
        model = cls.unfitted_from_meta(meta, directory)
        model._load(directory)
        return model

    @classmethod
    def unfitted_from_meta(cls, meta: dict[str, Any], directory: str | Path) -> Synthesizer:
        """The model a :data:`META_FILE` record describes, before its fitted state is
        restored (``directory`` names the model in errors).

        Raises:
            ModelError: the record is of another family, or lacks a key.
        """
        own = getattr(cls, "name", None)
        if meta.get("name") != own:
            raise ModelError(f"{Path(directory) / META_FILE}: a {meta.get('name')!r} model, not {own!r}; "
                             "load it with synthgen.load")
        try:
            config = family_config(meta["config"], cls.config_class, quiet=True)
            model = cls._from_meta(meta, config)
            model.n_train_ = meta["n_train"]
            model.train_seconds_ = meta["train_seconds"]
        except KeyError as exc:
            raise ModelError(f"{Path(directory) / META_FILE}: incomplete (no {exc.args[0]!r})") from None
        return model

    def extra_meta(self) -> dict[str, Any]:
        """Family facts worth recording beside the model (e.g. epsilon spent)."""
        return {}

    # -- hooks ------------------------------------------------------------------------
    def _resolve_config(self, n_rows: int) -> None:
        """Settle settings that depend on the training data's size (called before
        training starts, so callbacks see the final ``config``). Default: nothing."""

    @abstractmethod
    def _prepare(self, data: Any) -> Any:
        """Check ``data``, fit what preprocessing needs, set ``n_train_``; return what
        :meth:`_fit` trains on (``len()`` of it is the training size)."""

    @abstractmethod
    def _fit(self, prepared: Any, callbacks: CallbackList) -> None: ...

    @abstractmethod
    def _draw(self, n: int, conditions: Mapping[str, Any] | None, rng: np.random.Generator) -> Any:
        """``n`` records meeting ``conditions``, drawn with ``rng``."""

    @abstractmethod
    def _meta_fields(self) -> dict[str, Any]:
        """The family's keys of :data:`META_FILE`, between ``config`` and ``n_train``."""

    @classmethod
    @abstractmethod
    def _from_meta(cls, meta: dict[str, Any], config: ModelConfig) -> Synthesizer:
        """An unfitted model built from a saved meta record and its options."""

    @abstractmethod
    def _save(self, directory: Path) -> None:
        """Persist the fitted state beside the meta file."""

    @abstractmethod
    def _load(self, directory: Path) -> None:
        """Restore the fitted state written by :meth:`_save`."""

    def _finish_chunk(self, part: Any, start: int) -> Any:
        """A drawn chunk whose first record is record ``start`` of the whole draw; default as
        drawn (tables renumber their fresh ids)."""
        return part

    @staticmethod
    def _concat(parts: list[Any]) -> Any:
        """Join drawn chunks: frames row-wise; a named tuple of arrays (images, labels) field-wise."""
        if hasattr(parts[0], "_fields"):
            return type(parts[0])(*(np.concatenate(field) for field in zip(*parts)))
        import pandas as pd

        return pd.concat(parts, ignore_index=True)

    def _check_fitted(self) -> None:
        if not hasattr(self, self.fitted_attribute):
            raise ModelError(f"{type(self).__name__} is not fitted; call fit() first")
