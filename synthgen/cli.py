"""The ``synthgen`` command line.

``synthgen run`` runs the whole pipeline; ``ingest``, ``train``, ``generate`` and
``validate`` are the stages that ``dvc.yaml`` calls, as is ``augment`` (after train).
``upgrade-model`` converts a model directory saved by an older synthgen (pickles), once.
Exit codes: 0 success, 1 the validation verdict failed its thresholds, 2 bad input or
config (one line on stderr naming the file, column or key at fault).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from synthgen.version import __version__

EXIT_OK, EXIT_REJECTED, EXIT_BAD_INPUT = 0, 1, 2

#: Telemetry of the stack's libraries, off unless the user set it (applied when a command runs, not at import).
QUIET_ENV = {
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
}

params_option = click.option(
    "--params", "params_file", default="params.yaml", show_default=True,
    type=click.Path(dir_okay=False), help="params YAML file.",
)
set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override a params key, e.g. --set model.epochs=3 (repeatable).",
)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("rdt", "alembic", "mlflow", "great_expectations", "urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


#: Characters that break a line (str.splitlines), escaped in error messages.
LINE_BREAKS = {c: repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(message: str) -> str:
    """The message on one line: line breaks (from a column name, a value, a path) escaped."""
    return message.strip().translate(str.maketrans(LINE_BREAKS))


def _guarded(action: Callable[[], Any]) -> Any:
    """Run ``action``; a user mistake becomes one line on stderr and exit 2."""
    from synthgen.errors import SynthgenError

    try:
        return action()
    except SynthgenError as exc:
        click.echo(f"synthgen: error: {one_line(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("synthgen: interrupted", err=True)
        sys.exit(130)


def _load(params_file: str, overrides: tuple[str, ...]):
    """The params, validated and checked as a whole before any stage does work."""
    from synthgen.stages import load_params

    return load_params(params_file, overrides)


def _verdict_exit(report: dict[str, Any]) -> None:
    failed = [c for c in report["checks"] if not c["passed"]]
    for check in failed:
        value = "undefined" if check["value"] is None else f"{check['value']:.4g}"
        click.echo(f"synthgen: check failed: {check['name']} = {value} (threshold {check['threshold']})", err=True)
    sys.exit(EXIT_OK if report["passed"] else EXIT_REJECTED)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="synthgen")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(verbose: bool) -> None:
    """synthgen: trustworthy, reproducible synthetic data."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    _setup_logging(verbose)


@cli.command()
@params_option
@set_option
def run(params_file: str, overrides: tuple[str, ...]) -> None:
    """Run the whole pipeline: ingest, train, generate, validate."""
    from synthgen import stages

    report = _guarded(lambda: stages.run(_load(params_file, overrides)))
    _verdict_exit(report)


def _stage_command(name: str, summary: str) -> None:
    """Register ``synthgen NAME``: the stage ``synthgen.stages.NAME`` (what dvc.yaml calls)."""

    @cli.command(name=name, help=summary)
    @params_option
    @set_option
    def command(params_file: str, overrides: tuple[str, ...]) -> None:
        from synthgen import stages

        stage = getattr(stages, name)
        _guarded(lambda: stage(_load(params_file, overrides)))


for _name, _summary in {
    "ingest": "Read data.path, infer the schema, split off the holdout.",
    "train": "Fit the synthesizer named by model.name on the train split.",
    "generate": "Sample generate.rows synthetic rows from the trained model.",
}.items():
    _stage_command(_name, _summary)


@cli.command()
@params_option
@set_option
@click.option("--synthetic", type=click.Path(), default=None,
              help="Score this table (images: a folder with labels.csv) instead of the pipeline's own synthetic data.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the verdict with --synthetic (default: beside it).")
def validate(params_file: str, overrides: tuple[str, ...], synthetic: str | None, out: str | None) -> None:
    """Score synthetic data against the real train split; exit 1 if it fails."""
    from synthgen import stages

    report = _guarded(lambda: stages.validate(_load(params_file, overrides), synthetic, out))
    _verdict_exit(report)


@cli.command()
@params_option
@set_option
def augment(params_file: str, overrides: tuple[str, ...]) -> None:
    """Add conditional synthetic rows of data.target (images: of each label) to the train split;
    measure the benefit."""
    from synthgen import stages
    from synthgen.stages.augment_common import summary_lines

    manifest = _guarded(lambda: stages.augment(_load(params_file, overrides)))
    for line in summary_lines(manifest):
        click.echo(line)


@cli.command()
@click.option("--model", "model_ref", required=True, metavar="DIR_OR_URI",
              help="A saved model directory, or models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/model.")
@click.option("--rows", type=int, required=True, help="Number of rows (images) to draw (at least 1).")
@click.option("--where", multiple=True, metavar="COL=VALUE",
              help="Every row meets it: species=Adelie, bill_depth_mm=15..18 (repeatable); images: label=CLASS.")
@click.option("--seed", type=int, default=None, help="Seed of the draw (default: fresh randomness).")
@click.option("--out", required=True, type=click.Path(),
              help="Output file, .csv or .parquet; for an image generator a new directory (PNGs + labels.csv), "
                   "or one synthgen wrote before.")
@click.option("--tracking-uri", default=None, envvar="MLFLOW_TRACKING_URI", show_envvar=True,
              help="MLflow store for models:/ and runs:/ URIs.")
@click.option("--allow-unvalidated", is_flag=True,
              help="Sample a generator whose synthetic data failed the trust gate or was never validated "
                   "(default: refuse it, exit 2).")
def sample(model_ref: str, rows: int, where: tuple[str, ...], seed: int | None, out: str,
           tracking_uri: str | None, allow_unvalidated: bool) -> None:
    """Draw synthetic rows from a trained generator into a CSV or Parquet file (images: a folder).

    Only a generator whose synthetic data passed the trust gate is sampled unless
    --allow-unvalidated; an existing --out is replaced only when it is a regular file or a
    folder synthgen wrote.
    """
    from synthgen.consume import sample_to_file

    frame = _guarded(lambda: sample_to_file(model_ref, rows, out, where=where, seed=seed, tracking_uri=tracking_uri,
                                            allow_unvalidated=allow_unvalidated, keep=False))
    drawn = frame.attrs.get("rows", len(frame))  # keep=False: rows went to the file chunk by chunk
    click.echo(f"sample: {drawn} {'images' if 'file' in frame.columns else 'rows'} -> {out}")


@cli.command(name="upgrade-model")
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False),
              help="A model directory saved by an older synthgen (pickled files).")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Write the converted model to this new directory (default: replace --model in place, atomically).")
def upgrade_model(model_dir: str, out: str | None) -> None:
    """Convert a model saved by an older synthgen (pickles) to the safe format, once.

    The old pickles are read through allow-lists (synthgen's old transformers, numpy,
    ctgan's own names): a file naming anything else is refused, not run. The converted
    model loads without running code from it.
    """
    from synthgen.synthesizers.legacy import is_legacy, upgrade_model as upgrade

    legacy, target = _guarded(lambda: (is_legacy(model_dir), upgrade(model_dir, out)))
    if legacy:
        click.echo(f"upgrade-model: {model_dir} -> {target} (safe format: loading it runs no code from it)")
    else:
        click.echo(f"upgrade-model: {model_dir} is already in the safe format" + (f"; copied to {target}" if out else ""))


def main() -> None:
    cli(prog_name="synthgen")


if __name__ == "__main__":
    main()
