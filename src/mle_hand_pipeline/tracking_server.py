"""A remote MLflow tracking server: bounded client retries, and a reachability check before a run.

MLflow's HTTP client retries a failed request 7 times with exponential backoff (factor 2, up to
~4 minutes per call) and waits up to 120 s for each answer: with the server down, every metric an
epoch logs would hang the run for minutes. :data:`HTTP_DEFAULTS` bound that (each left as the user
set it, if set): a refused connection fails a call after ~7-10 s (3 retries, sleeping 0, 2 and 4 s
plus up to 1 s of jitter each), a server that stops answering after at most 4 x 30 s.

:func:`check_tracking_server` and :func:`check_credentials` (called by the project's
``hooks.ValidateRun`` before kedro-mlflow opens its run) ask an ``http(s)`` tracking URI's ``/health``
once, with a 5 s timeout, and stop the run naming the URI if it does not answer, or if it refuses this
process' credentials (naming the variables to set): before anything is trained or written.
"""

from __future__ import annotations

import base64
import os
import urllib.error
import urllib.request
from typing import Any

HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
HEALTH_TIMEOUT_S = 5.0


class TrackingServerUnreachableError(ConnectionError):
    """The MLflow tracking server does not answer; the message names its URI and what to do."""


class TrackingServerAuthError(PermissionError):
    """The MLflow tracking server wants credentials this process does not have, or refuses them."""


def apply_http_defaults(environ: dict[str, str] | None = None) -> None:
    """Set :data:`HTTP_DEFAULTS` in ``environ`` (``os.environ``) where not set already; child
    processes (a comparison's cells, DDP workers) inherit them."""
    environ = os.environ if environ is None else environ
    for key, value in HTTP_DEFAULTS.items():
        environ.setdefault(key, value)


def is_http(uri: str | None) -> bool:
    return str(uri or "").lower().startswith(("http://", "https://"))


def check_tracking_server(uri: str, timeout: float = HEALTH_TIMEOUT_S) -> None:
    """Raise :class:`TrackingServerUnreachableError` if the ``http(s)`` tracking server at ``uri``
    does not answer ``GET /health`` within ``timeout`` seconds (any other URI: nothing to check)."""
    if not is_http(uri):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read(64)
    except urllib.error.HTTPError as error:
        if error.code < 500:  # a server that answers (e.g. 401 behind auth, 404 behind a proxy) is up
            return
        reason: Any = f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
    else:
        return
    raise TrackingServerUnreachableError(
        f"the MLflow tracking server {uri} does not answer ({reason}); nothing was run. Start it "
        "(scripts/mlflow_server.sh, docs/mlflow.md#several-machines), or log to the project's "
        "mlflow.db: unset MLFLOW_TRACKING_URI and run without --env=server"
    )


def check_credentials(uri: str, timeout: float = HEALTH_TIMEOUT_S) -> None:
    """Raise :class:`TrackingServerAuthError` if the ``http(s)`` tracking server at ``uri`` refuses an
    API request with this process' credentials (MLflow's ``MLFLOW_TRACKING_USERNAME`` and
    ``MLFLOW_TRACKING_PASSWORD``; none set: an anonymous request)."""
    if not is_http(uri):
        return
    request = urllib.request.Request(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(64)
    except urllib.error.HTTPError as error:
        if error.code not in (401, 403):
            return  # another problem: the run's own requests will say what
        if not user:
            raise TrackingServerAuthError(
                f"the MLflow tracking server {uri} asks for credentials (HTTP {error.code}); nothing was "
                "run. Set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                "(docs/mlflow.md#several-machines)"
            ) from None
        raise TrackingServerAuthError(
            f"the MLflow tracking server {uri} refuses the credentials of user {user!r} "
            f"(MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD; HTTP {error.code}); nothing was run"
        ) from None
    except (urllib.error.URLError, OSError):
        return  # unreachable: check_tracking_server says so


def tracking_uri_of(context: Any) -> str | None:
    """The tracking URI a Kedro context's ``mlflow.yml`` names (``server.mlflow_tracking_uri``)."""
    try:
        config = context.config_loader["mlflow"]
    except Exception:  # no mlflow.yml: kedro-mlflow's defaults (a local store)
        return None
    return ((config or {}).get("server") or {}).get("mlflow_tracking_uri")
