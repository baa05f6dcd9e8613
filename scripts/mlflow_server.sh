#!/usr/bin/env bash
# A local MLflow tracking server for the project: runs, metrics and the model registry in a SQLite
# database, artifacts (checkpoints, models, figures) stored by the server itself (--serve-artifacts),
# so machines that log to it need no shared file system. Ctrl-C stops it.
#
#   bash scripts/mlflow_server.sh                       # http://127.0.0.1:5000, state in ./mlflow_server/
#   MLFLOW_SERVER_HOST=0.0.0.0 bash scripts/mlflow_server.sh   # reachable from other machines
#
# Then, on every machine: export MLFLOW_TRACKING_URI=http://<this host>:5000 (or kedro run --env=server).
# Settings (environment): MLFLOW_SERVER_DIR (default ./mlflow_server), MLFLOW_SERVER_HOST (127.0.0.1),
# MLFLOW_SERVER_PORT (5000), MLFLOW_SERVER_WORKERS (2), MLFLOW_SERVER_BACKEND (default: SQLite in
# MLFLOW_SERVER_DIR; a postgresql:// or mysql:// URI for a larger team). Other machines may have to be
# allowed by name: MLFLOW_SERVER_ALLOWED_HOSTS=myserver,myserver:5000 (docs/mlflow.md#several-machines).
set -euo pipefail

dir="${MLFLOW_SERVER_DIR:-mlflow_server}"
host="${MLFLOW_SERVER_HOST:-127.0.0.1}"
port="${MLFLOW_SERVER_PORT:-5000}"
mkdir -p "$dir/artifacts"
dir="$(cd "$dir" && pwd)"
backend="${MLFLOW_SERVER_BACKEND:-sqlite:///$dir/mlflow.db}"

# The venv's mlflow when there is one (as `kedro mlflow ui` finds it), else the one on PATH.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mlflow="$here/.venv/bin/mlflow"
[ -x "$mlflow" ] || mlflow=mlflow

echo "MLflow tracking server: http://$host:$port (backend $backend, artifacts $dir/artifacts)" >&2
exec "$mlflow" server \
    --backend-store-uri "$backend" \
    --serve-artifacts --artifacts-destination "$dir/artifacts" \
    --host "$host" --port "$port" --workers "${MLFLOW_SERVER_WORKERS:-2}" "$@"
