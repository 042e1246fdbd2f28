#!/bin/sh
# The synthgen CLI for the stage commands of dvc.yaml and images/dvc.yaml, with or without an
# activated environment. `dvc repro` runs each stage's cmd with the PATH it was started with,
# so `.venv/bin/dvc repro` (README: activate the environment "or prefix with .venv/bin/") would
# not find `synthgen` on it. Tried in order: the activated environment ($VIRTUAL_ENV), this
# checkout's .venv (the one `make install` creates), then `synthgen` on PATH.
root=$(cd "$(dirname "$0")/.." && pwd)
for bin in ${VIRTUAL_ENV:+"$VIRTUAL_ENV/bin"} "$root/.venv/bin"; do
    if [ -x "$bin/synthgen" ]; then
        exec "$bin/synthgen" "$@"
    fi
done
if command -v synthgen >/dev/null 2>&1; then
    exec synthgen "$@"
fi
echo "synthgen: not found in \$VIRTUAL_ENV, $root/.venv or on PATH; run 'make install' or activate the environment that has synthgen" >&2
exit 127
