"""Helpers shared by tests (importable: pyproject sets pythonpath = ["tests"])."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mle_hand_pipeline.keypoints import NUM_KEYPOINTS

PROJECT_ROOT = Path(__file__).parents[1]


def make_project(parent: Path) -> Path:
    """``parent/project``: the project's configuration without conf/local (fixture ``kedro_project``)."""
    project = parent / "project"
    project.mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", project)
    shutil.copytree(PROJECT_ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    (project / "src").mkdir()  # kedro wants a source folder; the package itself is installed
    return project


class _KedroForkServer:
    """One tests/kedro_fork_server.py process per test process, started at the first `kedro_run`."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def run(
        self, project: Path, args: tuple[str, ...], env: dict[str, str], timeout: float
    ) -> tuple[int, str]:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("kedro_fork_server.py"))],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            atexit.register(self.process.stdin.close)
        with tempfile.TemporaryDirectory() as folder:
            files = {name: str(Path(folder, name)) for name in ("stdout", "stderr", "pid")}
            request = {"args": list(args), "cwd": str(project), "env": env, **files}
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            ready, _, _ = select.select([self.process.stdout], [], [], timeout)
            if not ready:
                os.killpg(int(Path(files["pid"]).read_text()), signal.SIGKILL)
            returncode = json.loads(self.process.stdout.readline())["returncode"]
            output = "".join(Path(files[name]).read_text(errors="replace") for name in ("stdout", "stderr"))
        assert ready, f"kedro {' '.join(args)} timed out after {timeout} s:\n{output[-6000:]}"
        return returncode, output


_FORK_SERVER = _KedroForkServer()


def kedro_run(project: Path, *args: str, timeout: float = 600, check: bool = True) -> str:
    """Run `kedro run ARGS` in ``project``; returns its combined output (stdout, then stderr).

    The run is a process of its own, forked from tests/kedro_fork_server.py (torch and MLflow already
    imported there), running kedro's command line as the `kedro` script does. With ``check``, a failed
    run fails the test with the output; without, a SUCCESSFUL run does.
    """
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
    returncode, output = _FORK_SERVER.run(project, ("run", *args), env, timeout)
    assert (returncode == 0) == check, output[-6000:]
    return output


def preprocess_rhd(project: Path, root: Path) -> str:
    """`kedro run --pipelines=rhd_preprocess` on the RHD-layout set at ``root``, with 64 px crops."""
    return kedro_run(
        project, "--pipelines=rhd_preprocess", f"--params=rhd_root={root},rhd.preprocess.crop.size=64"
    )


def project_experiment(project: Path):
    """(MlflowClient, experiment id) of the project's SQLite tracking store (conf/base/mlflow.yml)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    return client, client.get_experiment_by_name("mle_hand_pipeline").experiment_id


# Picklable by reference for spawned processes: pytest's importlib mode gives test modules names
# that a child process cannot import, this module it can (pyproject: pythonpath = ["tests"]).
class KillAfterFirstEpoch:
    """An ``on_epoch_end`` callback that kills the process like SIGKILL would: no cleanup at all."""

    def __call__(self, row: dict) -> None:
        if row["epoch"] == 1:
            os._exit(3)


def fit_in_child(args: tuple) -> None:
    from mle_hand_pipeline.training.engine import fit

    fit(*args)


def artifact_paths(client, run_id: str, path: str = "") -> list[str]:
    """Every artifact file of an MLflow run, as paths relative to the run's artifact root."""
    found = []
    for item in client.list_artifacts(run_id, path):
        found += artifact_paths(client, run_id, item.path) if item.is_dir else [item.path]
    return found


# A model and schedule small enough to train in seconds on the CPU (params blocks of the pipelines).
TINY_MODEL_PARAMS = {
    "backbone": "resnet18",
    "stages": 2,
    "input_size": 64,
    "pretrained": False,
    "head_channels": 16,
    "loss": {"residual": "none", "flow_init": "identity"},  # flow options: ignored by the heatmap losses
}
TINY_TRAIN_PARAMS = {
    "epochs": 1,
    "batch_size": 8,
    "lr_milestones": [1],
    "devices": "cpu",
    "num_workers": 0,
    "eval_batch_size": 16,
    "label_noise": {"fraction": 0.0, "jitter_px": 0.0, "outlier_fraction": 0.0, "seed": 0},
}


def log_fake_cell_run(
    client, experiment_id: str, comparison: str, cell, metrics: dict, status="FINISHED"
) -> str:
    """An MLflow run as a comparison cell's train run leaves it: its tags and test metrics; returns its id."""
    run = client.create_run(experiment_id, tags=cell.tags(comparison), run_name=f"rhd-{cell.key}")
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(
    url: str, process: subprocess.Popen, timeout: float = 120, log: Path | None = None
) -> None:
    """Poll ``url`` until it answers 200; fail naming the server's log when ``process`` ends first or
    ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        output = log.read_text()[-3000:] if log is not None and log.exists() else ""
        assert process.poll() is None, f"the server at {url} stopped: {output}"
        assert time.monotonic() < deadline, f"{url} did not answer in {timeout:.0f} s: {output}"
        time.sleep(0.5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def running_mlflow_server(folder: Path, **env: str) -> Iterator[str]:
    """``scripts/mlflow_server.sh`` on a free loopback port, its store in ``folder``; yields its URI.

    Started in its own process group and stopped as a group (MLflow 3's server starts helper
    processes that outlive a kill of its main PID); ``env`` adds to the script's settings."""
    port = free_port()
    environment = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "MLFLOW_SERVER_DIR": str(folder),
        "MLFLOW_SERVER_PORT": str(port),
        "MLFLOW_SERVER_WORKERS": "1",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no job consumers: starts in half the time
        **env,
    }
    with open(folder / "server.log", "w") as log:
        process = subprocess.Popen(
            ["bash", str(PROJECT_ROOT / "scripts/mlflow_server.sh")],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{uri}/health", process, log=folder / "server.log")
        yield uri
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _group_alive(process.pid) and time.monotonic() < deadline:
            process.poll()
            time.sleep(0.2)
        if _group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        assert not _group_alive(process.pid), "server processes left behind"


def open_hand(cx: float = 32.0, cy: float = 40.0, s: float = 1.0) -> np.ndarray:
    """A plausible open right hand (21, 2) in a 64x64 image: wrist below, fingers fanning upwards."""
    kp = np.zeros((NUM_KEYPOINTS, 2))
    kp[0] = (cx, cy + 14 * s)
    for f, angle in enumerate(np.deg2rad([-150, -110, -90, -70, -50])):
        d = np.array([np.cos(angle), np.sin(angle)])
        for j in range(4):
            kp[1 + 4 * f + j] = kp[0] + d * (8 + 5 * j) * s
    return kp
