"""The README's commands other than `kedro run`, typed as written from a shell where the venv is NOT
activated (its scripts folder is not on PATH): `.venv/bin/kedro registry list`, `.venv/bin/kedro
mlflow ui` (it starts `mlflow` by name) and `.venv/bin/kedro viz build` (`kedro viz run` without the
server). `kedro run` itself: the end-to-end tests in tests/pipelines."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

from mle_hand_pipeline.pipeline_registry import register_pipelines

SCRIPTS = Path(sysconfig.get_path("scripts"))


def _without_venv() -> dict[str, str]:
    """The environment of a shell where the venv was never activated."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != SCRIPTS.resolve()]
    env["PATH"] = os.pathsep.join(path or ["/usr/bin", "/bin"])
    env.update(KEDRO_DISABLE_TELEMETRY="true", MLFLOW_DISABLE_TELEMETRY="true")
    return env


def _kedro(project: Path, *args: str, timeout: float = 300) -> str:
    completed = subprocess.run(
        [str(SCRIPTS / "kedro"), *args],
        cwd=project,
        env=_without_venv(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-6000:]
    return output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_environment_has_no_venv_on_path():
    # what made `kedro mlflow ui` fail in a fresh clone: `mlflow` is not found by name
    path = _without_venv()["PATH"]
    assert str(SCRIPTS) not in path.split(os.pathsep)
    found = shutil.which("mlflow", path=path)
    assert found is None or Path(found).parent.resolve() != SCRIPTS.resolve()


@pytest.mark.slow
def test_registry_list_mlflow_ui_and_viz_build_without_an_activated_venv(kedro_project):
    # The UI's server starts in the background while the other two commands run (half a minute each)
    port = _free_port()
    log = kedro_project / "mlflow_ui.log"  # a file, not a pipe nobody reads while the others run
    with open(log, "w") as output:
        ui = subprocess.Popen(
            [str(SCRIPTS / "kedro"), "mlflow", "ui", "--port", str(port)],
            cwd=kedro_project,
            env=_without_venv(),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the mlflow server it starts ends with it
        )
    try:
        listed = _kedro(kedro_project, "registry", "list")
        for name in register_pipelines():
            assert f"- {name}" in listed, name
        _kedro(kedro_project, "viz", "build")

        deadline, served = time.monotonic() + 180, None
        while time.monotonic() < deadline and ui.poll() is None and served is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    served = response.status
            except OSError:
                time.sleep(1)
        if served is None:
            if ui.poll() is None:
                os.killpg(ui.pid, signal.SIGTERM)
            ui.wait(timeout=30)
            pytest.fail(f"kedro mlflow ui served nothing:\n{log.read_text()[-4000:]}")
        assert served == 200
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=10", timeout=10
        ) as response:
            json.loads(response.read())  # the tracking API answers, on the project's store
        assert (kedro_project / "mlflow.db").is_file()
    finally:
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGTERM)
            try:
                ui.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(ui.pid, signal.SIGKILL)
                ui.wait()

    main = json.loads((kedro_project / "build/api/main").read_text())
    assert [p["id"] for p in main["pipelines"]] == list(register_pipelines())
    assert {"train_model", "evaluate_test", "rhd.test_metrics"} <= {node["name"] for node in main["nodes"]}
    assert not (kedro_project / ".viz").exists()
