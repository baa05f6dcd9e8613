"""scripts/mlflow_server.sh as a user starts it (issue 37): authentication before other machines can
reach it, a non-zero exit whenever the server does not run, and no worker left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
from helpers import PROJECT_ROOT, kedro_run, make_project
from mlflow.tracking import MlflowClient
from predict_helpers import RHD_IMAGES, SIZE, tiny_model

from mle_hand_pipeline import cli
from mle_hand_pipeline.export import PackedKeypoints, packed_signature
from mle_hand_pipeline.tracking_server import TrackingServerAuthError, check_credentials

SCRIPT = PROJECT_ROOT / "scripts/mlflow_server.sh"
PASSWORD = "correct-horse-battery-staple"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(folder: Path, port: int, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_SERVER_", "MLFLOW_TRACKING_"))}
    return {
        **env,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "MLFLOW_SERVER_DIR": str(folder),
        "MLFLOW_SERVER_PORT": str(port),
        "MLFLOW_SERVER_WORKERS": "1",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        **settings,
    }


def _run(folder: Path, port: int, **settings: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT)], env=_env(folder, port, **settings), capture_output=True, text=True, timeout=180
    )


def test_an_address_others_can_reach_is_refused_without_authentication(tmp_path):
    done = _run(tmp_path, _free_port(), MLFLOW_SERVER_HOST="0.0.0.0")
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without authentication" in done.stderr
    assert "MLFLOW_SERVER_AUTH=basic" in done.stderr and "MLFLOW_SERVER_TRUSTED_NETWORK=yes" in done.stderr
    done = _run(tmp_path, _free_port(), MLFLOW_SERVER_AUTH="basic")
    assert done.returncode == 2 and "needs MLFLOW_SERVER_ADMIN_PASSWORD" in done.stderr
    done = _run(tmp_path, _free_port(), MLFLOW_SERVER_AUTH="basic", MLFLOW_SERVER_ADMIN_PASSWORD="password")
    assert done.returncode == 2 and "12 characters or more" in done.stderr


def test_a_server_that_cannot_listen_exits_non_zero(tmp_path):
    """`MLFLOW_SERVER_HOST=<an address this machine does not have>` printed "Cannot assign requested
    address" and exited 0; a port already in use likewise."""
    done = _run(tmp_path, _free_port(), MLFLOW_SERVER_HOST="192.0.2.1", MLFLOW_SERVER_TRUSTED_NETWORK="yes")
    assert done.returncode != 0 and "cannot listen on 192.0.2.1" in done.stderr
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        done = _run(tmp_path, holder.getsockname()[1])
    assert done.returncode != 0 and "cannot listen on 127.0.0.1" in done.stderr
    assert "Address already in use" in done.stderr


def _answers(url: str, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        import base64

        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow
def test_basic_auth_refuses_anonymous_clients_and_a_killed_server_leaves_nothing(
    tmp_path, monkeypatch, capsys
):
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "server.log", "w")  # closed below, after the process
    process = subprocess.Popen(
        ["bash", str(SCRIPT)],
        env=_env(tmp_path / "state", port, MLFLOW_SERVER_AUTH="basic", MLFLOW_SERVER_ADMIN_PASSWORD=PASSWORD),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 150
        while "MLflow tracking server ready" not in (tmp_path / "server.log").read_text():
            assert process.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "not ready in 150 s"
            time.sleep(0.5)
        search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
        assert _answers(search) == 401  # anonymous
        assert _answers(search, ("admin", "wrong password")) == 401
        assert _answers(search, ("admin", PASSWORD)) == 200
        assert (tmp_path / "state/basic_auth.ini").stat().st_mode & 0o077 == 0  # the password: owner only

        # The project's check before a run names the server and the variables to set.
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
        with pytest.raises(TrackingServerAuthError, match=r"asks for credentials .*MLFLOW_TRACKING_USERNAME"):
            check_credentials(uri)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not it")
        with pytest.raises(TrackingServerAuthError, match="refuses the credentials of user 'admin'"):
            check_credentials(uri)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
        check_credentials(uri)
        client = MlflowClient(uri)  # MLflow's standard credential variables
        run = client.create_run(client.create_experiment("with_credentials"))
        client.log_metric(run.info.run_id, "x", 1.0)
        assert client.get_run(run.info.run_id).data.metrics == {"x": 1.0}

        # `kedro run` and `mle-hand predict` with the credentials; without them, refused naming them
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        project = make_project(tmp_path)
        # a kedro run that reads the server (the grid's finished cells) with the credentials
        printed = kedro_run(project, "--pipelines=compare_commands_rhd")
        assert "kedro run --pipelines=train_rhd" in printed
        mlflow.set_tracking_uri(uri)
        try:
            with mlflow.start_run(experiment_id=client.create_experiment("models")) as model_run:
                mlflow.pytorch.log_model(  # as export.log_mlflow_model logs it, without the ONNX extras
                    PackedKeypoints(tiny_model().eval()),
                    name="model",
                    signature=packed_signature(SIZE),
                    input_example=np.zeros((2, 3, SIZE, SIZE), dtype=np.float32),
                )
        finally:
            mlflow.set_tracking_uri(None)
        model = f"runs:/{model_run.info.run_id}/model"
        out = tmp_path / "predicted"
        predict = ["predict", str(RHD_IMAGES[0]), "--model", model, "--tracking-uri", uri]
        assert cli.main([*predict, "--out", str(out)]) == cli.EXIT_OK, capsys.readouterr().err
        assert (out / "keypoints.csv").is_file()
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
        monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
        failed = kedro_run(project, "--pipelines=compare_commands_rhd", check=False)  # refused at once
        assert f"the MLflow tracking server {uri} asks for credentials" in " ".join(failed.split())
        assert cli.main([*predict, "--out", str(tmp_path / "o")]) != 0
        assert "the server asks for credentials: set MLFLOW_TRACKING_USERNAME" in capsys.readouterr().err

        # `kill -9` of the server's main process: the script stops its workers and exits non-zero.
        main = _server_pid(process.pid)
        os.kill(main, signal.SIGKILL)
        assert process.wait(timeout=60) != 0
        assert "the MLflow server stopped (exit code 137)" in (tmp_path / "server.log").read_text()
        deadline = time.monotonic() + 30
        while _session_alive(main) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _session_alive(main), "server workers left behind"
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{uri}/health", timeout=3)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
        log.close()


def _server_pid(script_pid: int) -> int:
    """The `mlflow server` process the script started (its child, leader of its own session)."""
    children = subprocess.run(["pgrep", "-P", str(script_pid)], capture_output=True, text=True).stdout.split()
    for pid in map(int, children):
        if os.getsid(pid) == pid:
            return pid
    raise AssertionError(f"no server process under {script_pid}: {children}")


def _session_alive(sid: int) -> bool:
    found = subprocess.run(["pgrep", "-s", str(sid)], capture_output=True, text=True).stdout.split()
    return bool(found)
