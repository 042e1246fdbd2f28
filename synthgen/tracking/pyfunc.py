"""A saved synthesizer as an MLflow pyfunc model, logged and registered by run id.

The pyfunc wraps the synthesizer directory the train stage writes (``output.dir/model``)
as an artifact, so a registered version carries everything it needs::

    import mlflow  # with MLFLOW_TRACKING_URI pointing at the store
    generator = mlflow.pyfunc.load_model("models:/penguins@champion")
    generator.predict(pd.DataFrame({"rows": [100], "seed": [1],
                                    "conditions": ['{"species": "Adelie"}']}))

Input: one row per request with ``rows`` (required), ``seed``, ``conditions`` (a
JSON string or dict, see :func:`synthgen.synthesizers.requests.normalize_conditions`) and
``allow_unvalidated`` (optional, default false); output: the synthetic rows of every
request, concatenated in order.

Row limit: one call returns at most
:data:`~synthgen.synthesizers.requests.MAX_REQUEST_ROWS` (1,000,000) table rows or
:data:`~synthgen.synthesizers.requests.MAX_REQUEST_IMAGES` (10,000) images, summed over
its request rows; a larger request is refused with a
:class:`~synthgen.errors.ConditionError` before anything is drawn (the answer is built in
the serving process's memory; ``synthgen sample --out FILE`` writes any size in chunks).

The validate stage logs the generator with its verdict (a ``verdict.json`` artifact, see
:mod:`synthgen.tracking.gate`) and tags the registry version ``synthgen.verdict``. The
pyfunc refuses to predict for a generator whose verdict failed or is missing unless
every request row sets ``allow_unvalidated`` (or ``params={"allow_unvalidated": True}``). Any family whose ``sample(n,
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
from synthgen.tracking.gate import (
    CLI_HINT, REQUEST_HINT, UNKNOWN, VERDICT_ARTIFACT, VERDICT_FILE, Verdict, combine, logged_verdict,
    pyfunc_verdict_path, require_servable, verdict_from_tags, verdict_tags,
)

log = logging.getLogger(__name__)

GENERATOR_NAME = "generator"  # the logged model's name within its run
INPUT_EXAMPLE = pd.DataFrame({"rows": [5], "seed": [0]})


class SynthgenGenerator(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper of a fitted synthesizer: a request frame in, synthetic rows out.

    Serves only a generator whose logged verdict passed; for a failed or missing verdict
    every request row must set ``allow_unvalidated`` (or the predict params must).
    """

    verdict: Verdict = UNKNOWN
    ref: str = "synthgen generator"

    def load_context(self, context: Any) -> None:
        import json

        from synthgen.synthesizers import load as load_model

        directory = context.artifacts[SYNTHESIZER_ARTIFACT]
        self.synthesizer = load_model(directory)
        path = context.artifacts.get(VERDICT_ARTIFACT)
        self.verdict = logged_verdict(path, directory)
        record = json.loads(Path(path).read_text()) if self.verdict.passed is not None else {}
        where = ", ".join(f"{k} {record[k]}" for k in ("model_id", "mlflow_run_id") if record.get(k))
        self.ref = f"synthgen generator ({where})" if where else "synthgen generator"

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """Sample every request row of ``model_input``; return the rows concatenated.

        Raises:
            ModelError: the generator's verdict failed or is missing and the request
                does not set ``allow_unvalidated``.
            ConditionError: the requests ask for more than the row limit (module docstring).
        """
        from synthgen.synthesizers.requests import check_request_size, requests_from_frame, sample_requests

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        requests = requests_from_frame(frame)
        allowed = bool((params or {}).get("allow_unvalidated")) or all(r.allow_unvalidated for r in requests)
        require_servable(self.ref, self.verdict, allowed, REQUEST_HINT)
        check_request_size(self.synthesizer, requests)
        return sample_requests(self.synthesizer, requests)


def _input_schema():
    from mlflow.types.schema import AnyType, ColSpec, Schema

    return Schema([
        ColSpec("long", "rows"),
        ColSpec("long", "seed", required=False),
        ColSpec(AnyType(), "conditions", required=False),
        ColSpec("boolean", "allow_unvalidated", required=False),
    ])


def _params_schema():
    from mlflow.types.schema import ParamSchema, ParamSpec

    return ParamSchema([ParamSpec("allow_unvalidated", "boolean", False)])


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


def save_generator(model_dir: str | Path, path: str | Path, mlflow_model: Any = None,
                   verdict: dict[str, Any] | None = None) -> Path:
    """Write the pyfunc model of the synthesizer in ``model_dir`` to ``path``.

    Args:
        model_dir: a directory written by ``Synthesizer.save``.
        path: where the MLflow model directory goes (must not exist).
        mlflow_model: an ``mlflow.models.Model`` carrying run / model ids; default
            ``None`` (a standalone model).
        verdict: the :func:`synthgen.tracking.gate.verdict_record` stored with the model as
            ``verdict.json`` (and its pass/fail in the MLmodel metadata); default ``None``
            (none: the pyfunc then refuses requests without ``allow_unvalidated``).
    """
    import json

    quiet_mlflow()
    from synthgen.synthesizers import load as load_model

    synthesizer = load_model(model_dir)
    from mlflow.models import ModelSignature

    metadata = {"synthgen_version": __version__, "family": synthesizer.name}
    with tempfile.TemporaryDirectory(prefix="synthgen-verdict-") as tmp:
        artifacts = {SYNTHESIZER_ARTIFACT: str(model_dir)}
        if verdict is not None:
            (Path(tmp) / VERDICT_FILE).write_text(json.dumps(verdict, indent=2, default=str) + "\n")
            artifacts[VERDICT_ARTIFACT] = str(Path(tmp) / VERDICT_FILE)
            metadata["synthgen_verdict"] = verdict_tags(verdict)
        mlflow.pyfunc.save_model(
            path=str(path),
            python_model=str(Path(__file__).with_name("generator_model.py")),  # models from code, not a pickle
            artifacts=artifacts,
            signature=ModelSignature(inputs=_input_schema(), outputs=_output_schema(synthesizer),
                                     params=_params_schema()),
            input_example=INPUT_EXAMPLE,
            pip_requirements=_requirements(),
            mlflow_model=mlflow_model,
            metadata=metadata,
        )
    return Path(path)


def log_generator(client: Any, run_id: str, model_dir: str | Path, name: str = GENERATOR_NAME,
                  verdict: dict[str, Any] | None = None) -> str:
    """Log the pyfunc generator as a logged model of run ``run_id``; returns its model id.

    ``verdict`` (default ``None``) is stored with it (see :func:`save_generator`), with
    the new model id added, and set as the logged model's tags.
    """
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import Model

    run = client.get_run(run_id)
    logged = client.create_logged_model(
        run.info.experiment_id, name=name, source_run_id=run_id, model_type="synthesizer",
        tags={"synthgen.version": __version__, **(verdict_tags(verdict) if verdict is not None else {})},
    )
    try:
        with tempfile.TemporaryDirectory(prefix="synthgen-pyfunc-") as tmp:
            local = Path(tmp) / "model"
            meta = Model(artifact_path=logged.artifact_location, model_uuid=logged.model_id,
                         run_id=run_id, model_id=logged.model_id)
            record = None if verdict is None else {**verdict, "model_id": logged.model_id}
            save_generator(model_dir, local, mlflow_model=meta, verdict=record)
            client.log_model_artifacts(logged.model_id, str(local))
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    except BaseException:
        client.finalize_logged_model(logged.model_id, "FAILED")
        raise
    client.finalize_logged_model(logged.model_id, "READY")
    return logged.model_id


def register_generator(client: Any, name: str, model_id: str, run_id: str, alias: str | None,
                       tags: dict[str, str] | None = None) -> str:
    """Create a version of registered model ``name`` from a logged model, with ``tags``
    (default ``None``: only ``synthgen.model_id``); set ``alias`` on it.

    Returns:
        The new version number (as MLflow gives it, a string).
    """
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name, description="synthgen generator (pyfunc): rows, seed, conditions in; synthetic rows out")
        except MlflowException:  # a run sharing the store created it meanwhile
            client.get_registered_model(name)
    # the source is the logged model's storage location: a "models:/<id>" source makes the sqlite
    # registry look the model up through the *global* tracking URI (MLflow 3.17), not this client's;
    # that store then keeps no model id on the version, so a tag records it
    source = client.get_logged_model(model_id).artifact_location
    version = client.create_model_version(name, source=source, run_id=run_id, model_id=model_id,
                                          tags={"synthgen.model_id": model_id, **(tags or {})})
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return str(version.version)


def _resolve(client: Any, uri: str) -> tuple[str, Verdict | None, str | None]:
    """A model URI -> (artifact location, the registry version's verdict tags or None,
    the run whose ``synthgen.verdict`` tag is the fallback verdict or None).

    ``download_artifacts`` alone resolves registry URIs through the global tracking URI
    in MLflow 3.17, whatever ``tracking_uri`` it is given, hence this explicit client.
    """
    from mlflow.exceptions import MlflowException

    if uri.startswith("runs:/"):
        return uri, None, uri[len("runs:/"):].strip("/").split("/", 1)[0] or None
    if not uri.startswith("models:/"):
        return uri, None, None
    ref = uri[len("models:/"):].strip("/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        version = client.get_model_version_by_alias(name, alias)
    elif "/" in ref:
        name, number = ref.rsplit("/", 1)
        version = client.get_model_version(name, number)
    elif ref.startswith("m-"):
        logged = client.get_logged_model(ref)
        return logged.artifact_location, None, logged.source_run_id
    else:
        raise MlflowException(f"expected models:/NAME@ALIAS, models:/NAME/VERSION or models:/MODEL_ID, got {uri}")
    location = client.get_model_version_download_uri(name, str(version.version))
    return location, verdict_from_tags(version.tags or {}), version.run_id


def _run_verdict(client: Any, run_id: str | None) -> Verdict | None:
    """The ``synthgen.verdict`` tag of a run (validate sets it), or None."""
    if not run_id:
        return None
    try:
        return verdict_from_tags(client.get_run(run_id).data.tags)
    except Exception:  # noqa: BLE001 - a deleted or foreign run: no verdict on record
        return None


def fetch_synthesizer(uri: str, tracking_uri: str | None = None, allow_unvalidated: bool = False,
                      hint: str = CLI_HINT):
    """Download a model by MLflow URI and load its synthesizer, if its verdict passed.

    Accepts the pyfunc generator (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``,
    ``models:/MODEL_ID``) and a plain synthesizer directory logged as a run artifact
    (``runs:/RUN_ID/model``). The verdict is the strictest of the registry version's
    ``synthgen.verdict`` tag and the ``verdict.json`` logged with the model; when neither
    records one (versions registered before verdicts were), the run's ``synthgen.verdict``
    tag. A rejected registry tag refuses before anything is downloaded.

    Args:
        uri: the model URI.
        tracking_uri: the MLflow store; default ``None`` (``MLFLOW_TRACKING_URI``).
        allow_unvalidated: load a generator whose verdict failed or is missing (with a
            warning); default ``False`` (refuse it).
        hint: how the caller overrides the gate, for the refusal; default the CLI flag.

    Raises:
        ConfigError: no tracking URI given or set in ``MLFLOW_TRACKING_URI``.
        ModelError: the URI does not resolve, holds no synthgen model, or its verdict
            failed or is missing (unless ``allow_unvalidated``).
    """
    quiet_mlflow()
    import os

    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    from synthgen.tracking.artifacts import synthesizer_dir
    from synthgen.synthesizers import load as load_model

    tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        raise ConfigError(f"{uri}: an MLflow URI needs --tracking-uri or MLFLOW_TRACKING_URI")
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///"):]).is_file():
        raise ConfigError(f"{tracking_uri}: no MLflow store there (the SQLite file does not exist)")
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    tmp = Path(tempfile.mkdtemp(prefix="synthgen-fetch-"))
    try:
        try:
            location, tagged, run_id = _resolve(client, uri)
            if tagged is not None and tagged.passed is False:
                require_servable(uri, tagged, allow_unvalidated, hint)  # refused before the download
            local = Path(download_artifacts(artifact_uri=location, dst_path=str(tmp), tracking_uri=tracking_uri))
        except MlflowException as exc:
            raise ModelError(f"{uri}: cannot fetch from {tracking_uri} ({exc.message.splitlines()[0][:200]})") from None
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken store or network: one line, not a traceback
            raise ModelError(f"{uri}: cannot fetch from {tracking_uri} ({str(exc).splitlines()[0][:200]})") from None
        try:
            directory = synthesizer_dir(local)
        except ModelError as exc:
            raise ModelError(f"{uri}: {str(exc).split(': ', 1)[-1]}") from None
        logged = logged_verdict(pyfunc_verdict_path(local), directory) if directory != local else None
        verdict = combine(tagged, logged)
        if verdict.passed is None:
            verdict = combine(_run_verdict(client, run_id), verdict)
        require_servable(uri, verdict, allow_unvalidated, hint)
        return load_model(directory)  # loads fully into memory; the download can go
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
