"""The OpenMP wait policy the package chooses on import (src/mle_hand_pipeline/__init__.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import mle_hand_pipeline

IMPORT_AND_PRINT = "import os, mle_hand_pipeline; print(os.environ.get('OMP_WAIT_POLICY'))"


def _import_in_child(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    completed = subprocess.run(
        [sys.executable, "-c", IMPORT_AND_PRINT], env={**clean, **env}, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def test_an_explicit_setting_is_left_as_it_is():
    assert _import_in_child(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
    assert _import_in_child(GOMP_SPINCOUNT="10000") == "None"  # the user tuned the spinning instead


def test_a_busy_machine_gets_passive_waits():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert mle_hand_pipeline._other_tasks_running()
        assert _import_in_child() == "PASSIVE"
    finally:
        busy.kill()
        busy.wait()


def test_without_proc_loadavg_the_waits_are_passive(monkeypatch):
    def no_proc(*args, **kwargs):
        raise FileNotFoundError("/proc/loadavg")

    monkeypatch.setattr(mle_hand_pipeline, "open", no_proc, raising=False)
    assert mle_hand_pipeline._other_tasks_running()


@pytest.mark.parametrize("content", ["", "0.1 0.2 0.3\n"])
def test_an_unreadable_proc_loadavg_counts_as_busy(monkeypatch, tmp_path, content):
    odd = tmp_path / "loadavg"
    odd.write_text(content)
    real_open = open
    monkeypatch.setattr(mle_hand_pipeline, "open", lambda *a, **k: real_open(odd), raising=False)
    assert mle_hand_pipeline._other_tasks_running()
