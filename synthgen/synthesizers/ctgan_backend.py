"""``model.name: ctgan`` - the ``ctgan`` package's CTGAN behind synthgen's interface.

The reference implementation, kept as a backend and as the benchmark baseline. ctgan
is BUSL-1.1 licensed and slow to import (~3.5 s), so it is imported only when this
backend is used. CTGAN has no per-epoch hooks: its recorded per-epoch losses are
replayed to the callbacks after ``fit``. It has no native exact conditioning, so
conditions go through :class:`~synthgen.synthesizers.tabular.TabularSynthesizer`'s bounded
rejection sampling.

ctgan draws the conditional vector at *sampling* time from log-frequencies of the
levels, which over-represents rare levels; missing-value indicators are such levels, so
this backend uses ``joint_missing = False`` (missingness drawn independently at the real
rate) - measured on penguins: 0.4% missing numbers came back as 5-9% with indicators.

**Saved files.** ``preparer.json`` is the fitted
:class:`~synthgen.transformers.prepare.TablePreparer` as JSON. ``ctgan.pt`` is ctgan's own
format: ``torch.save`` of the whole ``CTGAN`` object (its networks, its fitted rdt/sklearn
transformers, its data sampler), which in practice cannot be stored without pickle. It
is therefore an **allow-listed pickle**: it is read with ``torch.load(weights_only=True)``
inside ``torch.serialization.safe_globals`` of exactly :data:`CTGAN_GLOBALS` - the
classes and functions a fitted CTGAN's object graph names (modules ``ctgan``, ``rdt``,
``sklearn``, ``numpy``, ``pandas``, ``torch``, and ``builtins.slice``/``bytes``).

What that protects: a planted payload cannot name any other callable - ``os.system``,
``subprocess``, ``eval``/``exec``, ``getattr``, ``builtins.__import__`` ... are refused
before anything is called (a :class:`~synthgen.errors.ModelError` naming the file and
the global). What it does not: the allow-listed classes are still built from the file's
data and their ``__setstate__`` runs, so a crafted file can make a *wrong* model (bad
rows), exhaust memory with huge arrays, or reach a bug in those libraries' own
unpickling code; and a future ctgan version that pickles other classes is refused until
they are added here. For files from untrusted sources prefer ``tabular_gan``, whose model
files are plain tensors and JSON.
"""

from __future__ import annotations

import importlib
import logging
import math
import pickle
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthgen.errors import ModelError
from synthgen.synthesizers.persistence import read_json, unsafe_message, write_json
from synthgen.synthesizers.tabular import TabularSynthesizer
from synthgen.training.callbacks import CallbackList
from synthgen.training.device import resolve_device
from synthgen.transformers.prepare import TablePreparer

log = logging.getLogger(__name__)

MODEL_FILE = "ctgan.pt"  # ctgan's own pickle of the CTGAN object, read through CTGAN_GLOBALS
PREPARER_FILE = "preparer.json"

#: Every global a fitted ``ctgan.CTGAN`` (0.12) pickles beyond torch's default
#: ``weights_only`` set - found with ``torch.serialization.get_unsafe_globals_in_checkpoint``
#: on saved models (mixed, numeric-only, discrete-only tables, before and after sampling) -
#: and the types of the objects those build (numpy's dtype classes, ``RandomState``),
#: which the unpickler checks before it restores their state.
CTGAN_GLOBALS: tuple[str, ...] = (
    "builtins.bytes",
    "builtins.slice",
    "ctgan.data_sampler.DataSampler",
    "ctgan.data_transformer.ColumnTransformInfo",
    "ctgan.data_transformer.DataTransformer",
    "ctgan.data_transformer.SpanInfo",
    "ctgan.synthesizers.ctgan.CTGAN",
    "ctgan.synthesizers.ctgan.Generator",
    "ctgan.synthesizers.ctgan.Residual",
    "numpy._core.multiarray._reconstruct",
    "numpy._core.multiarray.scalar",
    "numpy.dtype",
    "numpy.dtypes.BoolDType",
    "numpy.dtypes.Float32DType",
    "numpy.dtypes.Float64DType",
    "numpy.dtypes.Int8DType",
    "numpy.dtypes.Int16DType",
    "numpy.dtypes.Int32DType",
    "numpy.dtypes.Int64DType",
    "numpy.dtypes.ObjectDType",
    "numpy.dtypes.UInt8DType",
    "numpy.dtypes.UInt16DType",
    "numpy.dtypes.UInt32DType",
    "numpy.dtypes.UInt64DType",
    "numpy.ndarray",
    "numpy.random._mt19937.MT19937",
    "numpy.random._pickle.__bit_generator_ctor",
    "numpy.random._pickle.__randomstate_ctor",
    "numpy.random.bit_generator.SeedSequence",
    "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
    "numpy.random.mtrand.RandomState",
    "pandas._libs.internals._unpickle_block",
    "pandas.core.frame.DataFrame",
    "pandas.core.indexes.base.Index",
    "pandas.core.indexes.base._new_Index",
    "pandas.core.indexes.range.RangeIndex",
    "pandas.core.internals.managers.BlockManager",
    "pandas.core.internals.managers.SingleBlockManager",
    "pandas.core.series.Series",
    "rdt.transformers.categorical.OneHotEncoder",
    "rdt.transformers.null.NullTransformer",
    "rdt.transformers.numerical.ClusterBasedNormalizer",
    "sklearn.mixture._bayesian_mixture.BayesianGaussianMixture",
    "torch.nn.modules.activation.ReLU",
    "torch.nn.modules.batchnorm.BatchNorm1d",
    "torch.nn.modules.container.Sequential",
    "torch.nn.modules.linear.Linear",
)


#: ``torch.serialization.safe_globals`` sets one process-wide list and restores it on exit: two
#: threads loading at once (a threaded sweep, Prefect's thread task runner) would end each
#: other's allow-list mid-load. Every allow-listed load holds this lock.
SAFE_LOAD_LOCK = threading.Lock()


def allowed_globals() -> list[tuple[Any, str]]:
    """:data:`CTGAN_GLOBALS` resolved to ``(object, name)`` pairs for
    ``torch.serialization.safe_globals`` (names this installation lacks are left out)."""
    pairs = []
    for name in CTGAN_GLOBALS:
        module, attr = name.rsplit(".", 1)
        try:
            pairs.append((getattr(importlib.import_module(module), attr), name))
        except (ImportError, AttributeError):
            log.debug("ctgan allow-list: %s not in this installation", name)
    return pairs


def load_ctgan(path: Path) -> Any:
    """The ``CTGAN`` object ``ctgan`` saved at ``path``, read through the allow-list
    (see the module docstring), on CPU.

    Raises:
        ModelError: the file is missing, names a global outside :data:`CTGAN_GLOBALS`
            (refused before it is called), is corrupt, or holds something else.
    """
    import torch
    from ctgan import CTGAN

    try:
        with SAFE_LOAD_LOCK, torch.serialization.safe_globals(allowed_globals()):
            model = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{path.parent}: incomplete ctgan model ({path.name} missing)") from None
    except pickle.UnpicklingError as exc:
        raise ModelError(unsafe_message(path, exc)) from None
    except Exception as exc:  # a torn or foreign file: torch raises many kinds
        raise ModelError(f"{path}: corrupt or not a ctgan model ({type(exc).__name__})") from None
    if type(model) is not CTGAN:
        raise ModelError(f"{path}: not a ctgan model (found a {type(model).__name__})")
    return model


class CTGANSynthesizer(TabularSynthesizer):
    """Wraps ``ctgan.CTGAN`` (0.12). ``model.*`` map onto CTGAN's arguments."""

    name = "ctgan"
    joint_missing = False

    def _batch_size(self) -> int:
        step = self.config.pac * 2 // math.gcd(self.config.pac, 2)
        batch = max(step, self.config.batch_size // step * step)
        if batch != self.config.batch_size:
            log.info("ctgan needs a batch that is even and a multiple of pac; using %d", batch)
        return batch

    def _fit(self, prepared: pd.DataFrame, callbacks: CallbackList) -> None:
        from ctgan import CTGAN

        self.model_ = CTGAN(
            embedding_dim=self.config.embedding_dim,
            generator_dim=tuple(self.config.generator_dim),
            discriminator_dim=tuple(self.config.discriminator_dim),
            generator_lr=self.config.lr,
            discriminator_lr=self.config.lr,
            batch_size=self._batch_size(),
            epochs=self.config.epochs,
            pac=self.config.pac,
            enable_gpu=resolve_device(self.config.device) == "cuda",
        )
        self.model_.set_random_state(self.config.seed)
        self.model_.fit(prepared, discrete_columns=self.preparer_.discrete_columns)
        losses = self.model_.loss_values
        for epoch, row in enumerate(losses.itertuples(index=False)):
            callbacks.on_epoch_end(epoch, {"loss_g": float(row[1]), "loss_d": float(row[2])})

    def _sample(self, n: int, rng: np.random.Generator, conditions: dict[str, Any] | None) -> pd.DataFrame:
        self.model_.set_random_state(int(rng.integers(2**31 - 1)))
        return self.model_.sample(n)

    def _save(self, directory: Path) -> None:
        """:data:`MODEL_FILE` in ctgan's own format (``CTGAN.save``), :data:`PREPARER_FILE` as JSON."""
        self.model_.save(directory / MODEL_FILE)
        write_json(directory / PREPARER_FILE, self.preparer_.to_dict())

    def _load(self, directory: Path) -> None:
        model = load_ctgan(directory / MODEL_FILE)
        try:
            preparer = TablePreparer.from_dict(read_json(directory / PREPARER_FILE, self.name))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"{directory / PREPARER_FILE}: corrupt ({type(exc).__name__}: {exc})") from None
        self.restore_fitted(model, preparer)

    def restore_fitted(self, model: Any, preparer: Any) -> None:
        """Set the fitted state: a ``CTGAN`` object (moved to ``model.device``) and the preparer."""
        import torch

        model.set_device(torch.device(resolve_device(self.config.device)))
        self.model_ = model
        self.preparer_ = preparer
