"""Serve the tabular and image flows as scheduled Prefect deployments on one machine.

``python -m pipelines.serve --start-server`` (``make serve``) starts ``prefect server`` on
loopback and a serve process that registers two deployments and runs their flow runs, each
in its own subprocess:

* ``synthgen-tabular/tabular`` — ``--params`` (default ``params.yaml``) on ``--cron``
  (default ``0 2 * * *``, 02:00 every day);
* ``synthgen-images/images`` — ``--image-params`` (default ``params.images.yaml``) on
  ``--image-cron`` (default ``0 3 * * *``); ``--image-params none`` leaves it out.

Each deployment's parameters are ``params_file`` (an absolute path) and ``overrides`` (the
``--set key=value`` list), the same inputs as the CLI: the flow validates them through
:func:`synthgen.stages.load_params` before any stage runs, and this entry point validates
them once before serving, so a bad params file is one stderr line and exit 2. Without
``--start-server`` it serves against ``PREFECT_API_URL`` (a server started elsewhere).
Trigger a run by hand with ``prefect deployment run synthgen-tabular/tabular``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

TABULAR_DEPLOYMENT = "tabular"  # full name: synthgen-tabular/tabular
IMAGE_DEPLOYMENT = "images"  # full name: synthgen-images/images


def _check(params_file: str, overrides: list[str], kind: str) -> str:
    """Validate a params file for a deployment; return its absolute path."""
    from synthgen.stages import load_params
    from synthgen.errors import ConfigError

    params = load_params(params_file, overrides)
    if params.data.kind != kind:
        raise ConfigError(f"{params_file}: data.kind is {params.data.kind!r}; this deployment runs {kind}")
    return str(Path(params_file).resolve())


def build_deployments(params_file: str = "params.yaml", overrides: list[str] | None = None,
                      cron: str = "0 2 * * *", image_params: str | None = "params.images.yaml",
                      image_cron: str = "0 3 * * *") -> list:
    """The deployments to serve: tabular always, images unless ``image_params`` is None.

    Raises:
        ConfigError: a params file is missing or invalid, or of the wrong ``data.kind``.
    """
    from pipelines.image_flow import image_pipeline
    from pipelines.tabular_flow import tabular_pipeline

    overrides = list(overrides or [])
    deployments = [tabular_pipeline.to_deployment(
        name=TABULAR_DEPLOYMENT, cron=cron, tags=["synthgen"], concurrency_limit=1,
        parameters={"params_file": _check(params_file, overrides, "tabular"), "overrides": overrides},
        description="ingest -> train -> generate -> validate on a schedule")]
    if image_params is not None:
        deployments.append(image_pipeline.to_deployment(
            name=IMAGE_DEPLOYMENT, cron=image_cron, tags=["synthgen"], concurrency_limit=1,
            parameters={"params_file": _check(image_params, [], "image"), "overrides": []},
            description="the image pipeline on a schedule"))
    return deployments


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return json.loads(response.read()) is True
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def local_server(port: int = 4200, home: str | Path | None = None, timeout: float = 180.0,
                 log_file: str | Path | None = None) -> Iterator[str]:
    """Run ``prefect server start`` on 127.0.0.1 for the duration of the block; yield its API URL.

    Args:
        port: TCP port on loopback; default 4200.
        home: ``PREFECT_HOME`` of the server (its SQLite database); default: inherited.
        timeout: seconds to wait for ``/api/health``; default 180 (a fresh database migrates).
        log_file: where the server's output goes; default: discarded.

    Raises:
        RuntimeError: the server exited or was not healthy within ``timeout``.
    """
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    env.pop("PREFECT_API_URL", None)
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect) if prefect.exists() else "prefect", "server", "start",
               "--host", "127.0.0.1", "--port", str(port)]
    api_url = f"http://127.0.0.1:{port}/api"
    sink = open(log_file, "ab") if log_file else subprocess.DEVNULL
    process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(api_url):
            if process.poll() is not None:
                raise RuntimeError(f"prefect server exited with code {process.returncode} (log: {log_file})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"prefect server not healthy at {api_url} after {timeout:.0f} s (log: {log_file})")
            time.sleep(1)
        yield api_url
    finally:
        _stop(process)
        if log_file:
            sink.close()


def _stop(process: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL it after ``grace`` seconds."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    from synthgen.errors import SynthgenError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="tabular params file (default params.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override for the tabular deployment, e.g. model.epochs=50")
    parser.add_argument("--cron", default="0 2 * * *", help="tabular schedule (default: 02:00 daily)")
    parser.add_argument("--image-params", default="params.images.yaml",
                        help="image params file (default params.images.yaml); 'none' serves no image deployment")
    parser.add_argument("--image-cron", default="0 3 * * *", help="image schedule (default: 03:00 daily)")
    parser.add_argument("--start-server", action="store_true",
                        help="start `prefect server` on 127.0.0.1:--port first and stop it on exit")
    parser.add_argument("--port", type=int, default=4200, help="port of --start-server (default 4200)")
    parser.add_argument("--server-log", default=None, help="file for the output of --start-server's server")
    args = parser.parse_args(argv)
    image_params = None if args.image_params.lower() == "none" else args.image_params
    try:  # bad config: exit 2 before any server starts
        build_deployments(args.params, args.overrides, args.cron, image_params, args.image_cron)
    except SynthgenError as exc:
        print(f"synthgen: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.start_server:
        signal.signal(signal.SIGTERM, _interrupt)  # `kill PID` stops the server and the serve process too
        child = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--start-server"]
        with local_server(args.port, log_file=args.server_log) as api_url:
            print(f"prefect server: {api_url.removesuffix('/api')} (UI and API)", flush=True)
            env = dict(os.environ, PREFECT_API_URL=api_url)
            serving = subprocess.Popen([sys.executable, "-m", "pipelines.serve", *child], env=env,
                                       start_new_session=True)
            try:
                return serving.wait()
            except KeyboardInterrupt:
                _stop(serving)
                return 0
    if not os.environ.get("PREFECT_API_URL"):
        print("synthgen: error: set PREFECT_API_URL to a running `prefect server` or pass --start-server "
              "(a temporary server runs no schedules)", file=sys.stderr)
        return 2
    from prefect import serve

    serve(*build_deployments(args.params, args.overrides, args.cron, image_params, args.image_cron))
    return 0


if __name__ == "__main__":
    sys.exit(main())
