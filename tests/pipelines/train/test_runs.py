"""Training runs through `kedro run` as users start, stop and overlap them: concurrent runs own their
checkpoints, Ctrl-C/SIGTERM/SIGKILL leave an honest MLflow status, resume links the runs, and a bad
parameter ends the output with its message. MLflow on a temporary SQLite store (fixture kedro_project)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import kedro_run, make_project, preprocess_rhd, project_experiment

from mle_hand_pipeline.training.checkpoint import load_checkpoint

TINY = """
rhd:
  model: {backbone: resnet18, stages: 2, input_size: 64, head_channels: 16}
  train: {epochs: 1, batch_size: 8, lr_milestones: [1], num_workers: 0, eval_batch_size: 16,
          sigma_warmup_epochs: 0}
  evaluate: {log_model: false}  # no test here reads the exported model (~6 s a run)
"""


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory, tiny_rhd):
    """A project with the tiny RHD set preprocessed, made once for this module."""
    project = make_project(tmp_path_factory.mktemp("preprocessed"))
    (project / "conf/local/parameters_tiny.yml").write_text(TINY)
    preprocess_rhd(project, tiny_rhd["root"])
    return project


@pytest.fixture
def project(preprocessed, tmp_path):
    """A fresh copy of it per test (its own data/, mlflow.db and mlruns/)."""
    return Path(shutil.copytree(preprocessed, tmp_path / "project"))


def _start(project, *params: str, outputs: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
    if outputs:
        env["MLE_HAND_RUN_OUTPUTS"] = outputs  # this run's own report folder (conf/base/catalog.yml)
    command = [sys.executable, "-m", "kedro", "run", "--pipelines=train_rhd", f"--params={','.join(params)}"]
    return subprocess.Popen(
        command,
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_signal_handlers,
    )


def _default_signal_handlers() -> None:
    """Give the child SIGINT at its default even when pytest was started with it ignored (``nohup``,
    ``(cmd &)`` and some CI wrappers start background jobs so): the test's Ctrl-C must arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_first_epoch(project, process: subprocess.Popen, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list((project / "data/06_models/rhd/mle").glob("*/last.pt"))
        if found:
            return found[0].parent
        assert process.poll() is None, process.communicate()
        time.sleep(0.5)
    process.kill()
    raise AssertionError("no epoch finished in time")


def _runs(project):
    client, experiment = project_experiment(project)
    return client, {run.info.run_id: run for run in client.search_runs([experiment])}


@pytest.mark.slow
def test_concurrent_runs_log_their_own_checkpoints_and_metrics(project, tmp_path):
    # Each with its own report folder: a second run on the same one is refused (test_hooks.py).
    first = _start(project, "rhd.train.seed=1")
    second = _start(project, "rhd.train.seed=2", outputs="data/second_run")
    for process in (first, second):
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-4000:]
    client, runs = _runs(project)
    assert len(runs) == 3 and sorted(r.info.status for r in runs.values()) == ["FINISHED"] * 3
    trained = {run_id: run for run_id, run in runs.items() if run.info.run_name == "train_rhd"}
    assert len(trained) == 2
    weights = {}
    for run_id, run in trained.items():
        own = project / "data/06_models/rhd/mle" / run_id  # the run's folder is named after its MLflow run
        best = load_checkpoint(own / "best.pt")
        assert run.data.metrics["val_nme"] == pytest.approx(best["val"]["val_nme"])
        logged_path = client.download_artifacts(run_id, "checkpoints/best.pt", str(tmp_path / run_id))
        logged = load_checkpoint(logged_path)
        weights[run_id] = logged["model"]
        assert all(torch.equal(logged["model"][k], best["model"][k]) for k in best["model"])
    a, b = weights.values()
    assert not all(torch.equal(a[k], b[k]) for k in a)  # seeds 1 and 2: different models
    reports = [
        project / "data/08_reporting/rhd/test_metrics.json",
        project / "data/second_run/08_reporting/rhd/test_metrics.json",
    ]

    assert {json.loads(r.read_text())["run"]["mlflow_run_id"] for r in reports} == set(trained)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_is_recorded_killed(project, signum):
    process = _start(project, "rhd.train.epochs=1000")
    run_dir = _wait_for_first_epoch(project, process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0
    _, runs = _runs(project)
    run = runs[run_dir.name]
    assert run.info.status == "KILLED" and "test_nme" not in run.data.metrics
    assert f"MLflow run {run_dir.name} is recorded as KILLED" in err.strip().splitlines()[-1]


@pytest.mark.slow
def test_resume_after_sigkill_closes_the_stale_run_and_links_the_new_one(project):
    process = _start(project, "rhd.train.epochs=1000")
    killed = _wait_for_first_epoch(project, process)
    process.send_signal(signal.SIGKILL)  # no handler can run: the MLflow run stays RUNNING
    process.communicate(timeout=60)
    client, runs = _runs(project)
    assert runs[killed.name].info.status == "RUNNING"
    epochs_done = load_checkpoint(killed / "last.pt")["epoch"]

    kedro_run(
        project, "--pipelines=train_rhd", f"--params=rhd.train.resume=true,rhd.train.epochs={epochs_done + 1}"
    )
    client, runs = _runs(project)
    old = runs[killed.name]
    new = next(r for r in runs.values() if r.data.tags.get("resumed_from") == killed.name)
    assert old.info.status == "KILLED" and old.data.tags["resumed_by"] == new.info.run_id
    assert new.info.status == "FINISHED"
    # The resumed run carries every epoch, those its checkpoint trained included (issue 38).
    steps = [m.step for m in client.get_metric_history(new.info.run_id, "val_nme")]
    assert steps == list(range(1, epochs_done + 2))
    state = load_checkpoint(project / "data/06_models/rhd/mle" / new.info.run_id / "last.pt")
    assert [row["epoch"] for row in state["history"]] == list(range(1, epochs_done + 2))


@pytest.mark.slow
def test_a_bad_parameter_fails_before_anything_is_written_and_its_message_comes_last(project):
    output = kedro_run(
        project, "--pipelines=train_rhd", "--params=rhd.model.method=foo,rhd.train.lr=0", check=False
    )
    last = output.strip().splitlines()[-3:]
    assert last[0] == "kedro run failed: ParameterError: invalid parameters:"
    assert last[1].strip() == "rhd.model.method must be one of mle, heatmap_l2, integral, rle, cpm, got 'foo'"
    assert last[2].strip() == "rhd.train.lr must be a positive number (the Adam learning rate), got 0"
    assert not (project / "data/06_models").exists()
    _, runs = _runs(project)
    assert [r.info.run_name for r in runs.values()] == ["rhd_preprocess"]  # no MLflow run was opened


@pytest.mark.slow
def test_a_batch_larger_than_the_training_crops_is_refused_before_a_run_folder_exists(project):
    """Issue 38: the refusal came only after a run folder and its MLflow run were opened."""
    output = kedro_run(project, "--pipelines=train_rhd", "--params=rhd.train.batch_size=10000", check=False)
    last = output.strip().splitlines()[-1]
    assert "rhd.train.batch_size=10000 is larger than the" in last and "training crops" in last, last
    assert not (project / "data/06_models/rhd/mle").exists()
    _, runs = _runs(project)
    assert [r.info.run_name for r in runs.values()] == ["rhd_preprocess"]  # no MLflow run was opened


@pytest.mark.slow
def test_preprocessing_during_a_training_is_refused_and_the_training_goes_on(project, tiny_rhd):
    """Issue 38: rhd_preprocess at a training's epoch 2 succeeded; the run was tested on the new store."""
    training = _start(project, "rhd.train.epochs=1000")
    try:
        _wait_for_first_epoch(project, training)
        output = kedro_run(
            project, "--pipelines=rhd_preprocess", f"--params=rhd_root={tiny_rhd['root']}", check=False
        )
        last = output.strip().splitlines()[-1]
        assert "CropStoreBusyError" in last and "is being read by pid" in last, last
        assert "kedro run --pipelines=train_rhd" in last
        assert training.poll() is None  # still training, on the store it started with
    finally:
        training.kill()
        training.communicate(timeout=60)
