"""Helpers shared by tests (importable: pyproject sets pythonpath = ["tests"])."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def kedro_run(project: Path, *args: str, timeout: float = 600, check: bool = True) -> str:
    """Run `kedro run ARGS` in ``project``; returns its combined output.

    With ``check``, a failed run fails the test with the output; without, a SUCCESSFUL run does.
    """
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
    completed = subprocess.run(
        [sys.executable, "-m", "kedro", "run", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = completed.stdout + completed.stderr
    assert (completed.returncode == 0) == check, output[-6000:]
    return output


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
