"""The shared command-line entry of the flow modules: ``python -m pipelines.<flow> --params
FILE [--set KEY=VALUE ...]``. Bad config exits 2 with one line, before Prefect starts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any


def flow_main(
    description: str,
    run: Callable[[argparse.Namespace], int],
    argv: list[str] | None = None,
    default_params: str = "params.yaml",
    kind: str | None = None,
    extra: Callable[[argparse.ArgumentParser], Any] | None = None,
) -> int:
    """Parse ``--params``/``--set`` (plus ``extra``'s options), validate the params
    (and ``data.kind`` when ``kind`` is given), then return ``run(args)``; a
    :class:`~synthgen.errors.SynthgenError` becomes one stderr line and its exit code."""
    from synthgen.stages import load_params
    from synthgen.errors import SynthgenError

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default=default_params)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params, args.overrides)  # bad config: exit 2 before Prefect starts
        if kind is not None and params.data.kind != kind:
            raise SynthgenError(f"{args.params}: data.kind is {params.data.kind!r}; this flow runs {kind} data")
        return run(args)
    except SynthgenError as exc:
        print(f"synthgen: error: {exc}", file=sys.stderr)
        return exc.exit_code
