"""Consuming synthgen's output: sampling a saved generator, loading a published dataset.

Two consumers, one package:

* a model user samples fresh rows from a generator, by local directory or MLflow URI
  (:func:`open_model`, :func:`parse_where`, :func:`sample_to_file`, in
  :mod:`synthgen.consume.models`; the CLI's ``synthgen sample`` and the MLflow pyfunc
  wrapper share the request parsing of :mod:`synthgen.synthesizers.requests`), only from
  a generator whose data passed the trust gate unless ``allow_unvalidated=True``;
* a data user reads the validated synthetic dataset a pipeline run published, or the
  augmented training set of the augment stage (:func:`load_dataset`, in
  :mod:`synthgen.consume.datasets`), which refuses data whose verdict failed and data
  whose bytes do not match the manifest's hash.

Example::

    import synthgen
    ds = synthgen.load_dataset("outputs/demo/published")
    ds.data.head(); ds.manifest["validation"]["passed"]  # -> True
    digits = synthgen.load_dataset("outputs/digits/published")  # an image run
    digits.images.shape, digits.labels[:5]  # (N, 8, 8, 1) uint8, class names
    train = synthgen.load_dataset("outputs/demo/augment")  # real + synthetic, .provenance per row

Conditions have one JSON-friendly form everywhere: ``{"col": value}`` for an exact
value and ``{"col": {"low": a, "high": b}}`` (inclusive) for a numeric range.

This package imports no MLflow: :mod:`synthgen.tracking.pyfunc` is loaded only when a
model is opened by URI.
"""

from __future__ import annotations

from synthgen.consume.datasets import DATASHEET, DEFAULT_SYNTHETIC, LOADERS, MANIFEST, SyntheticDataset, load_dataset
from synthgen.tracking.artifacts import synthesizer_dir
from synthgen.consume.models import (
    OUTPUT_MARKER, TABLE_WRITERS, URI_SCHEMES, check_output_dir, check_writable, open_model, sample_images_to_folder,
    sample_to_file, write_sample, write_table,
)
from synthgen.synthesizers.requests import SampleRequest, normalize_conditions, parse_where, requests_from_frame, sample_requests
from synthgen.tracking.artifacts import PYFUNC_ARTIFACT

__all__ = [
    "DATASHEET", "DEFAULT_SYNTHETIC", "LOADERS", "MANIFEST", "OUTPUT_MARKER", "PYFUNC_ARTIFACT", "TABLE_WRITERS",
    "URI_SCHEMES", "SampleRequest", "SyntheticDataset", "check_output_dir", "check_writable", "load_dataset", "normalize_conditions", "open_model",
    "parse_where", "requests_from_frame", "sample_images_to_folder", "sample_requests", "sample_to_file",
    "synthesizer_dir", "write_sample", "write_table",
]
