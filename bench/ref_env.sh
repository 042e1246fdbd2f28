#!/usr/bin/env bash
# The reference environment for bench/private.py: MST and AIM from Private-PGM
# (Ryan McKenna's reference implementation, github.com/ryan112358/private-pgm,
# Apache-2.0), in a venv of its own. It is a benchmark comparator only: synthgen never
# imports it, and nothing here is installed into synthgen's .venv.
#
#   bash bench/ref_env.sh [ENV_DIR] [SRC_DIR]      (defaults /work/ref-env, /work/ref-src)
#
# SRC_DIR must hold the private-pgm source tree (src/mbi, mechanisms/, pyproject.toml):
# a checkout or `git archive` of the repository. Measured with commit
# 4d2b3c566b148da3ef800ce76e6189c548f2da22 (2025-08-08, package mbi 1.0.0, JAX-based).
# Pins, found by running it: the newest JAX (0.10) breaks its traced Factor arithmetic
# ("DynamicJaxprTracer has no attribute domain"), so jax/jaxlib 0.7.0 (its era); pandas 3
# drops the grouping columns in groupby.apply, which its synthetic_data() relies on, so
# pandas 2.2.3. matplotlib is imported by mechanisms/cdp2adp.py; pyarrow reads synthgen's
# parquet split. smartnoise-synth was not used: it pins opacus 0.14 / old torch, and its
# MST/AIM wrap an older copy of the same library.
set -euo pipefail
ENV_DIR=${1:-/work/ref-env}
SRC_DIR=${2:-/work/ref-src}
if [ ! -f "$SRC_DIR/pyproject.toml" ]; then
  echo "put the private-pgm source tree in $SRC_DIR first (git clone or git archive)" >&2
  exit 2
fi
python3 -m venv "$ENV_DIR"
"$ENV_DIR/bin/pip" install -q --upgrade pip
"$ENV_DIR/bin/pip" install -q "$SRC_DIR" pyarrow matplotlib
"$ENV_DIR/bin/pip" install -q "jax==0.7.0" "jaxlib==0.7.0" "pandas==2.2.3" \
  "numpy==2.4.6" "scipy==1.17.1" "networkx==3.6.1" "chex==0.1.92" "optax==0.2.8"  # as measured
# smoke test: both mechanisms on a tiny random table
cd "$SRC_DIR/mechanisms"
PYTHONPATH=. JAX_PLATFORMS=cpu "$ENV_DIR/bin/python" - <<'EOF'
import itertools
import numpy as np, pandas as pd
from mbi import Dataset, Domain
from mst import MST
from aim import AIM
rng = np.random.default_rng(0)
df = pd.DataFrame({"a": rng.integers(0, 3, 300), "b": rng.integers(0, 4, 300)})
data = Dataset(df, Domain(["a", "b"], [3, 4]))
print("MST rows", len(MST(data, 1.0, 1e-5).df))
_, synth = AIM(1.0, 1e-5, max_model_size=1).run(data, [(("a", "b"), 1.0)])
print("AIM rows", len(synth.df))
EOF
"$ENV_DIR/bin/pip" freeze > "$ENV_DIR/freeze.txt"
echo "reference environment ready: $ENV_DIR (pip freeze in $ENV_DIR/freeze.txt)"
