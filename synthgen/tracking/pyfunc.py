"""A saved synthesizer as an MLflow pyfunc model, logged and registered by run id.

The pyfunc wraps the synthesizer directory the train stage writes (``output.dir/model``)
as an artifact, so a registered version carries everything it needs::

    import mlflow  # with MLFLOW_TRACKING_URI pointing at the store
    generator = mlflow.pyfunc.load_model("models:/penguins@champion")
    generator.predict(pd.DataFrame({"rows": [100], "seed": [1],
                                    "conditions": ['{"species": "Adelie"}']}))

Input: one row per request with ``rows`` (required), ``seed`` and ``conditions`` (a
JSON string or dict, see :func:`synthgen.synthesizers.requests.normalize_conditions`); output: the
synthetic rows of every request, concatenated in order. Any family whose ``sample(n,
conditions, seed)`` returns a frame plugs in unchanged; an image family would add its
own output schema in :func:`_output_schema`.

Everything here goes through an explicit ``MlflowClient`` (no active run, no global
tracking URI), like the rest of :mod:`synthgen.tracking`: the model is saved locally,
then logged as an MLflow 3 *logged model* linked to the pipeline's run, then registered.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from synthgen.version import __version__
from synthgen.errors import ConfigError, ModelError
from synthgen.tracking.artifacts import PYFUNC_ARTIFACT as SYNTHESIZER_ARTIFACT, quiet_mlflow  # key of the synthesizer dir among artifacts

log = logging.getLogger(__name__)

GENERATOR_NAME = "generator"  # the logged model's name within its run
INPUT_EXAMPLE = pd.DataFrame({"rows": [5], "seed": [0]})


class SynthgenGenerator(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper of a fitted synthesizer: a request frame in, synthetic rows out."""

    def load_context(self, context: Any) -> None:
        from synthgen.synthesizers import load as load_model

        self.synthesizer = load_model(context.artifacts[SYNTHESIZER_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """Sample every request row of ``model_input``; return the rows concatenated."""
        from synthgen.synthesizers.requests import requests_from_frame, sample_requests

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return sample_requests(self.synthesizer, requests_from_frame(frame))


def _input_schema():
    from mlflow.types.schema import AnyType, ColSpec, Schema

    return Schema([
        ColSpec("long", "rows"),
        ColSpec("long", "seed", required=False),
        ColSpec(AnyType(), "conditions", required=False),
    ])


def _output_schema(synthesizer: Any):
    """The output columns of a table generator; None for images (arrays have no column type)."""
    import warnings

    if getattr(synthesizer, "data_kind", "tabular") != "tabular":
        return None

    from mlflow.models import infer_signature

    with warnings.catch_warnings():  # "integer columns cannot hold missing values": outputs are not enforced
        warnings.simplefilter("ignore", UserWarning)
        return infer_signature(model_output=synthesizer.sample(2, seed=0)).outputs


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for name in ("synthgen", "mlflow", "torch", "pandas", "numpy", "pyarrow", "scikit-learn"):
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pins.append(name if name != "synthgen" else f"synthgen=={__version__}")
    return pins


def save_generator(model_dir: str | Path, path: str | Path, mlflow_model: Any = None) -> Path:
    """Write the pyfunc model of the synthesizer in ``model_dir`` to ``path``.

    Args:
        model_dir: a directory written by ``Synthesizer.save``.
        path: where the MLflow model directory goes (must not exist).
        mlflow_model: an ``mlflow.models.Model`` carrying run / model ids; default
            ``None`` (a standalone model).
    """
    quiet_mlflow()
    from synthgen.synthesizers import load as load_model

    synthesizer = load_model(model_dir)
    from mlflow.models import ModelSignature

    mlflow.pyfunc.save_model(
        path=str(path),
        python_model=str(Path(__file__).with_name("generator_model.py")),  # models from code, not a pickle
        artifacts={SYNTHESIZER_ARTIFACT: str(model_dir)},
        signature=ModelSignature(inputs=_input_schema(), outputs=_output_schema(synthesizer)),
        input_example=INPUT_EXAMPLE,
        pip_requirements=_requirements(),
        mlflow_model=mlflow_model,
        metadata={"synthgen_version": __version__, "family": synthesizer.name},
    )
    return Path(path)


def log_generator(client: Any, run_id: str, model_dir: str | Path, name: str = GENERATOR_NAME) -> str:
    """Log the pyfunc generator as a logged model of run ``run_id``; returns its model id."""
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import Model

    run = client.get_run(run_id)
    logged = client.create_logged_model(
        run.info.experiment_id, name=name, source_run_id=run_id, model_type="synthesizer",
        tags={"synthgen.version": __version__},
    )
    try:
        with tempfile.TemporaryDirectory(prefix="synthgen-pyfunc-") as tmp:
            local = Path(tmp) / "model"
            meta = Model(artifact_path=logged.artifact_location, model_uuid=logged.model_id,
                         run_id=run_id, model_id=logged.model_id)
            save_generator(model_dir, local, mlflow_model=meta)
            client.log_model_artifacts(logged.model_id, str(local))
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    except BaseException:
        client.finalize_logged_model(logged.model_id, "FAILED")
        raise
    client.finalize_logged_model(logged.model_id, "READY")
    return logged.model_id


def register_generator(client: Any, name: str, model_id: str, run_id: str, alias: str | None) -> str:
    """Create a version of registered model ``name`` from a logged model; set ``alias`` on it.

    Returns:
        The new version number (as MLflow gives it, a string).
    """
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="synthgen generator (pyfunc): rows, seed, conditions in; synthetic rows out")
    # the source is the logged model's storage location: a "models:/<id>" source makes the sqlite
    # registry look the model up through the *global* tracking URI (MLflow 3.17), not this client's;
    # that store then keeps no model id on the version, so a tag records it
    source = client.get_logged_model(model_id).artifact_location
    version = client.create_model_version(name, source=source, run_id=run_id, model_id=model_id,
                                          tags={"synthgen.model_id": model_id})
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return str(version.version)


def _resolve(uri: str, tracking_uri: str) -> str:
    """``models:/`` URIs -> artifact locations through a client of ``tracking_uri``.

    ``download_artifacts`` alone resolves registry URIs through the global tracking URI
    in MLflow 3.17, whatever ``tracking_uri`` it is given.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if not uri.startswith("models:/"):
        return uri
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    ref = uri[len("models:/"):].strip("/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        version = client.get_model_version_by_alias(name, alias).version
    elif "/" in ref:
        name, version = ref.rsplit("/", 1)
    elif ref.startswith("m-"):
        return client.get_logged_model(ref).artifact_location
    else:
        raise MlflowException(f"expected models:/NAME@ALIAS, models:/NAME/VERSION or models:/MODEL_ID, got {uri}")
    return client.get_model_version_download_uri(name, str(version))


def fetch_synthesizer(uri: str, tracking_uri: str | None = None):
    """Download a model by MLflow URI and load its synthesizer.

    Accepts the pyfunc generator (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``,
    ``models:/MODEL_ID``) and a plain synthesizer directory logged as a run artifact
    (``runs:/RUN_ID/model``).

    Raises:
        ConfigError: no tracking URI given or set in ``MLFLOW_TRACKING_URI``.
        ModelError: the URI does not resolve or holds no synthgen model.
    """
    quiet_mlflow()
    import os

    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    from synthgen.tracking.artifacts import synthesizer_dir
    from synthgen.synthesizers import load as load_model

    tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        raise ConfigError(f"{uri}: an MLflow URI needs --tracking-uri or MLFLOW_TRACKING_URI")
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///"):]).is_file():
        raise ConfigError(f"{tracking_uri}: no MLflow store there (the SQLite file does not exist)")
    tmp = Path(tempfile.mkdtemp(prefix="synthgen-fetch-"))
    try:
        try:
            location = _resolve(uri, tracking_uri)
            local = Path(download_artifacts(artifact_uri=location, dst_path=str(tmp), tracking_uri=tracking_uri))
        except MlflowException as exc:
            raise ModelError(f"{uri}: cannot fetch from {tracking_uri} ({exc.message.splitlines()[0][:200]})") from None
        except Exception as exc:  # noqa: BLE001 - a broken store or network: one line, not a traceback
            raise ModelError(f"{uri}: cannot fetch from {tracking_uri} ({str(exc).splitlines()[0][:200]})") from None
        try:
            directory = synthesizer_dir(local)
        except ModelError as exc:
            raise ModelError(f"{uri}: {str(exc).split(': ', 1)[-1]}") from None
        return load_model(directory)  # loads fully into memory; the download can go
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
