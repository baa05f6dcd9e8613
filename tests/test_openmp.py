"""The OpenMP wait policy the `kedro` commands choose (src/mle_hand_pipeline/openmp.py), and a package
import that changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mle_hand_pipeline import openmp

IMPORT_AND_PRINT = "import os, {module}; print(os.environ.get('OMP_WAIT_POLICY'))"


def _import_in_child(module: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    completed = subprocess.run(
        [sys.executable, "-c", IMPORT_AND_PRINT.format(module=module)],
        env={**clean, **env},
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


@pytest.fixture
def busy_machine():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        busy.kill()
        busy.wait()


def test_importing_the_package_changes_nothing_even_on_a_busy_machine(busy_machine):
    assert openmp.other_tasks_running()
    assert _import_in_child("mle_hand_pipeline") == "None"


def test_the_kedro_settings_give_a_busy_machine_passive_waits(busy_machine):
    assert _import_in_child("mle_hand_pipeline.settings") == "PASSIVE"


def test_an_explicit_setting_is_left_as_it_is(monkeypatch):
    monkeypatch.setattr(openmp, "other_tasks_running", lambda: True)
    for name, value in (("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "10000")):
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
        monkeypatch.setenv(name, value)
        openmp.choose_wait_policy()
        assert os.environ.get("OMP_WAIT_POLICY") == (value if name == "OMP_WAIT_POLICY" else None)


def test_without_proc_loadavg_the_waits_are_passive(monkeypatch):
    def no_proc(*args, **kwargs):
        raise FileNotFoundError("/proc/loadavg")

    monkeypatch.setattr(openmp, "open", no_proc, raising=False)
    assert openmp.other_tasks_running()


@pytest.mark.parametrize("content", ["", "0.1 0.2 0.3\n"])
def test_an_unreadable_proc_loadavg_counts_as_busy(monkeypatch, tmp_path, content):
    odd = tmp_path / "loadavg"
    odd.write_text(content)
    real_open = open
    monkeypatch.setattr(openmp, "open", lambda *a, **k: real_open(odd), raising=False)
    assert openmp.other_tasks_running()
