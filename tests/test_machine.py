"""The machine description that training reports and MLflow tags carry."""

from __future__ import annotations

import json
import os

import torch

from mle_hand_pipeline.machine import VERSIONED, describe_machine


def test_the_description_names_the_dispatched_instruction_set_and_the_versions():
    description = describe_machine()
    assert description["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert description["cpu"] and description["logical_cpus"] >= 1
    assert description["torch"] == torch.__version__.split("+")[0]
    assert set(VERSIONED) <= set(description)
    assert description["cuda"] is None or isinstance(description["cuda"], str)
    assert description["omp_wait_policy"] == os.environ.get("OMP_WAIT_POLICY", "default")
    json.dumps(description)  # goes into training_report.json as is


def test_a_library_that_is_not_installed_is_recorded_as_missing(monkeypatch):
    monkeypatch.setattr("mle_hand_pipeline.machine.VERSIONED", ("torch", "no-such-library"))
    description = describe_machine()
    assert description["no-such-library"] is None and description["torch"]
