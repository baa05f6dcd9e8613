"""What every `kedro` command's settings set up in its process (src/mle_hand_pipeline/settings.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig

from mle_hand_pipeline import hooks


def test_the_environment_scripts_come_first_on_path_once():
    """`.venv/bin/kedro mlflow ui` starts `mlflow` by name: without the venv activated it was not found."""
    scripts = sysconfig.get_path("scripts")
    for path in (["/usr/bin", "/bin"], [scripts, "/usr/bin", "/bin"]):
        completed = subprocess.run(
            [sys.executable, "-c", "import os, mle_hand_pipeline.settings; print(os.environ['PATH'])"],
            env={**os.environ, "PATH": os.pathsep.join(path)},
            capture_output=True,
            text=True,
        )
        assert completed.returncode == 0, completed.stderr
        assert completed.stdout.strip().split(os.pathsep) == [scripts, "/usr/bin", "/bin"]


def test_five_hooks_each_doing_what_only_a_hook_can():
    from mle_hand_pipeline.settings import HOOKS

    assert [type(hook) for hook in HOOKS] == [
        hooks.LockDataFolders,
        hooks.ValidateRun,
        hooks.MarkInterruptedRuns,
        hooks.ErrorSummary,
        hooks.KedroRunParams,
    ]
