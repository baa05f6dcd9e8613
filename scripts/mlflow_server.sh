#!/usr/bin/env bash
# A local MLflow tracking server for the project: runs, metrics and the model registry in a SQLite
# database, artifacts (checkpoints, models, figures) stored by the server itself (--serve-artifacts),
# so machines that log to it need no shared file system. Ctrl-C (or SIGTERM) stops it and all its
# worker processes.
#
#   bash scripts/mlflow_server.sh                       # http://127.0.0.1:5000, this machine only
#   MLFLOW_SERVER_AUTH=basic MLFLOW_SERVER_ADMIN_PASSWORD=... MLFLOW_SERVER_HOST=0.0.0.0 \
#       bash scripts/mlflow_server.sh                   # other machines, with MLflow's basic-auth app
#
# Then, on every machine: export MLFLOW_TRACKING_URI=http://<this host>:5000 (or kedro run --env=server)
# and, with authentication, MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD. Put TLS in front of
# it for a network you do not control (docs/mlflow.md#several-machines).
#
# Settings (environment): MLFLOW_SERVER_DIR (default ./mlflow_server), MLFLOW_SERVER_HOST (127.0.0.1),
# MLFLOW_SERVER_PORT (5000), MLFLOW_SERVER_WORKERS (2), MLFLOW_SERVER_BACKEND (default: SQLite in
# MLFLOW_SERVER_DIR; a postgresql:// or mysql:// URI for a larger team), MLFLOW_SERVER_AUTH (none |
# basic), MLFLOW_SERVER_ADMIN_USERNAME (admin) and MLFLOW_SERVER_ADMIN_PASSWORD (required with basic,
# 12 characters or more; used when the server's user database is created). An address other than the
# loopback is refused without authentication unless MLFLOW_SERVER_TRUSTED_NETWORK=yes says that
# everyone who can reach it may read and change every run. Other machines may have to be allowed by
# name: MLFLOW_SERVER_ALLOWED_HOSTS=myserver,myserver:5000. MLflow's telemetry stays off unless
# MLFLOW_DISABLE_TELEMETRY=false. Exits non-zero when the server cannot start or stops unexpectedly.
set -euo pipefail

dir="${MLFLOW_SERVER_DIR:-mlflow_server}"
host="${MLFLOW_SERVER_HOST:-127.0.0.1}"
port="${MLFLOW_SERVER_PORT:-5000}"
auth="${MLFLOW_SERVER_AUTH:-none}"
export MLFLOW_DISABLE_TELEMETRY="${MLFLOW_DISABLE_TELEMETRY:-true}" DO_NOT_TRACK="${DO_NOT_TRACK:-1}"

fail() { echo "mlflow_server.sh: $*" >&2; exit 2; }

case "$host" in
  127.*|localhost|::1|"[::1]") loopback=yes ;;
  *) loopback=no ;;
esac
case "$auth" in
  none)
    if [ "$loopback" = no ] && [ "${MLFLOW_SERVER_TRUSTED_NETWORK:-no}" != yes ]; then
      fail "refusing to listen on $host without authentication: anyone who reaches $host:$port could read" \
        "every run, log runs and move a registry alias (which every machine predicting with it then loads)." \
        "Set MLFLOW_SERVER_AUTH=basic and MLFLOW_SERVER_ADMIN_PASSWORD, or, on a network where everyone is" \
        "trusted with all of that, MLFLOW_SERVER_TRUSTED_NETWORK=yes (docs/mlflow.md#several-machines)"
    fi ;;
  basic)
    password="${MLFLOW_SERVER_ADMIN_PASSWORD:-}"
    [ -n "$password" ] || fail "MLFLOW_SERVER_AUTH=basic needs MLFLOW_SERVER_ADMIN_PASSWORD (the admin's" \
      "password; MLflow's built-in default is never used)"
    [ "${#password}" -ge 12 ] || fail "MLFLOW_SERVER_ADMIN_PASSWORD must have 12 characters or more" ;;
  *) fail "MLFLOW_SERVER_AUTH must be none or basic, got '$auth'" ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$here/.venv/bin/python"
[ -x "$python" ] || python=python3
# The venv's mlflow when there is one (as `kedro mlflow ui` finds it), else the one on PATH.
mlflow="$here/.venv/bin/mlflow"
[ -x "$mlflow" ] || mlflow=mlflow

# A port another process holds: say so now (the server would log "Address already in use" and stop).
"$python" - "$host" "$port" <<'EOF' || exit 2
import socket, sys
host, port = sys.argv[1].strip("[]"), int(sys.argv[2])
try:
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(info[0], socket.SOCK_STREAM) as probe:
        probe.bind(info[4])
except OSError as error:
    sys.exit(f"mlflow_server.sh: cannot listen on {host}:{port}: {error.strerror or error}")
EOF

mkdir -p "$dir/artifacts"
dir="$(cd "$dir" && pwd)"
backend="${MLFLOW_SERVER_BACKEND:-sqlite:///$dir/mlflow.db}"
app=()
if [ "$auth" = basic ]; then
  # MLflow's basic-auth app reads its settings from this file; the admin user is created with this
  # password the first time (the user database in $dir/basic_auth.db keeps it after that).
  config="$dir/basic_auth.ini"
  (umask 077 && cat > "$config" <<EOF
[mlflow]
default_permission = READ
database_uri = sqlite:///$dir/basic_auth.db
admin_username = ${MLFLOW_SERVER_ADMIN_USERNAME:-admin}
admin_password = $password
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
  )
  export MLFLOW_AUTH_CONFIG_PATH="$config"
  # The app's CSRF secret: the user's, else a random one kept beside the database (the same after a
  # restart, so browser sessions stay valid).
  if [ -z "${MLFLOW_FLASK_SERVER_SECRET_KEY:-}" ]; then
    [ -s "$dir/flask_secret_key" ] || (umask 077 && "$python" -c "import secrets; print(secrets.token_hex(32))" > "$dir/flask_secret_key")
    MLFLOW_FLASK_SERVER_SECRET_KEY="$(cat "$dir/flask_secret_key")"
    export MLFLOW_FLASK_SERVER_SECRET_KEY
  fi
  app=(--app-name basic-auth)
fi

echo "MLflow tracking server: http://$host:$port (backend $backend, artifacts $dir/artifacts, auth $auth)" >&2
# Its own session, so that stopping it stops every worker it started (they outlive a kill of the main
# process otherwise, and keep answering on the port).
setsid "$mlflow" server \
    --backend-store-uri "$backend" \
    --serve-artifacts --artifacts-destination "$dir/artifacts" \
    --host "$host" --port "$port" --workers "${MLFLOW_SERVER_WORKERS:-2}" "${app[@]}" "$@" &
server=$!
stop() { kill -TERM -- "-$server" 2>/dev/null || true; }
trap 'stop; wait "$server" 2>/dev/null; exit 130' INT
trap 'stop; wait "$server" 2>/dev/null; exit 143' TERM
trap stop EXIT

case "$host" in
  0.0.0.0|::|"[::]") url="http://127.0.0.1:$port/health" ;;  # every address: ask the loopback one
  *) url="http://$host:$port/health" ;;
esac
ready=no
for _ in $(seq 240); do
  if ! kill -0 "$server" 2>/dev/null; then
    wait "$server" && code=0 || code=$?
    echo "mlflow_server.sh: the MLflow server stopped before it answered (exit code $code): see above" >&2
    exit 1
  fi
  if "$python" -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=2)" "$url" 2>/dev/null; then
    ready=yes
    break
  fi
  sleep 0.5
done
[ "$ready" = yes ] || { echo "mlflow_server.sh: the MLflow server did not answer $url in 120 s" >&2; exit 1; }
echo "MLflow tracking server ready: http://$host:$port" >&2
wait "$server" && code=0 || code=$?
echo "mlflow_server.sh: the MLflow server stopped (exit code $code)" >&2
exit $(( code == 0 ? 1 : code ))
