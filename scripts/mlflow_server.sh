#!/usr/bin/env bash
# A shared MLflow tracking server for a team: a SQL backend store (runs, metrics, model
# registry) and a proxied artifact store (clients upload and download artifacts through
# the server, so they need no storage credentials of their own).
#
# Usage:  scripts/mlflow_server.sh [extra `mlflow server` options...]   (or `make mlflow-server`)
# Then:   tracking.uri: http://127.0.0.1:5000 in params.yaml (or MLFLOW_TRACKING_URI).
#
# Configuration (environment; defaults in brackets) — a team changes these, not code:
#   SYNTHGEN_MLFLOW_BACKEND    SQLAlchemy URI of the backend store
#                              [sqlite:///<repo>/mlflow-server/mlflow.db];
#                              teams: postgresql://USER:PASSWORD@HOST:5432/mlflow
#                              (needs `pip install psycopg2-binary` on the server)
#   SYNTHGEN_MLFLOW_ARTIFACTS  where the server stores artifacts
#                              [<repo>/mlflow-server/artifacts]; teams: s3://BUCKET/mlflow
#                              (needs boto3; AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and,
#                              for MinIO or another S3-compatible store,
#                              MLFLOW_S3_ENDPOINT_URL=http://minio:9000 on the server only)
#   SYNTHGEN_MLFLOW_HOST       interface to bind [127.0.0.1: this machine only];
#                              0.0.0.0 exposes it — add --allowed-hosts NAME then
#   SYNTHGEN_MLFLOW_PORT       [5000]
#   SYNTHGEN_MLFLOW_WORKERS    uvicorn workers [1: enough for a few clients on small machines]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="$ROOT/mlflow-server"
BACKEND="${SYNTHGEN_MLFLOW_BACKEND:-sqlite:///$STATE/mlflow.db}"
ARTIFACTS="${SYNTHGEN_MLFLOW_ARTIFACTS:-$STATE/artifacts}"
HOST="${SYNTHGEN_MLFLOW_HOST:-127.0.0.1}"
PORT="${SYNTHGEN_MLFLOW_PORT:-5000}"
WORKERS="${SYNTHGEN_MLFLOW_WORKERS:-1}"
MLFLOW="${MLFLOW:-$ROOT/.venv/bin/mlflow}"
[ -x "$MLFLOW" ] || MLFLOW=mlflow

case "$BACKEND" in sqlite:///*) mkdir -p "$(dirname "${BACKEND#sqlite:///}")" ;; esac
case "$ARTIFACTS" in *://*) ;; *) mkdir -p "$ARTIFACTS" ;; esac

export MLFLOW_DISABLE_TELEMETRY="${MLFLOW_DISABLE_TELEMETRY:-true}" DO_NOT_TRACK="${DO_NOT_TRACK:-1}"
# MLflow 3's server-side job runner (six huey worker processes, for GenAI evaluation and
# trace jobs) is of no use to synthgen and costs memory and CPU on small machines.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
echo "mlflow server: backend $BACKEND, artifacts $ARTIFACTS, http://$HOST:$PORT" >&2
# --serve-artifacts (the default, stated here) proxies artifacts to --artifacts-destination;
# new experiments get the artifact root mlflow-artifacts:/ that clients resolve via the server.
exec "$MLFLOW" server \
    --backend-store-uri "$BACKEND" \
    --serve-artifacts \
    --artifacts-destination "$ARTIFACTS" \
    --host "$HOST" \
    --port "$PORT" \
    --workers "$WORKERS" \
    "$@"
