"""Every entry point against a real MLflow tracking server (issue 20): `scripts/mlflow_server.sh` on a
free loopback port (SQLite backend and proxied artifacts in a temporary folder), started once for the
module in its own process group and stopped as a group (MLflow 3's server starts helper processes that
outlive a kill of its main PID). MLFLOW_TRACKING_URI names the server, as a user would set it."""

from __future__ import annotations

import subprocess
import sys
import time

import mlflow
import pytest
import torch
from helpers import (
    PROJECT_ROOT,
    TINY_MODEL_PARAMS,
    TINY_TRAIN_PARAMS,
    artifact_paths,
    free_port,
    kedro_run,
    preprocess_rhd,
    running_mlflow_server,
)
from mlflow.tracking import MlflowClient

from mle_hand_pipeline.model_source import load_mlflow_pytorch, resolve_model_source, training_method
from mle_hand_pipeline.tracking import EpochLogger, TrackingLostError
from mle_hand_pipeline.tracking_server import (
    HTTP_DEFAULTS,
    TrackingServerUnreachableError,
    check_tracking_server,
)

TINY = """
rhd:
  model: {backbone: resnet18, stages: 2, input_size: 64, head_channels: 16}
  train: {epochs: 1, batch_size: 8, lr_milestones: [1], num_workers: 0, eval_batch_size: 16}
  compare: {methods: [mle], seeds: [0, 1, 2], noise_levels: [{name: clean}], jobs: 2}
"""
IMAGE = PROJECT_ROOT / "tests/fixtures/real_samples/FreiHAND_pub_v2/training/rgb/00000000.jpg"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> str:
    """The tracking URI of an `mlflow server` started by scripts/mlflow_server.sh for this module."""
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow_server")) as uri:
        yield uri


@pytest.fixture
def on_server(server, monkeypatch) -> MlflowClient:
    """MLFLOW_TRACKING_URI = the server, for this test and the commands it starts. The test server
    (one worker) shares 2 cores with the runs it tracks and the other test worker, and was seen to
    stall for over 30 s: its clients wait up to 180 s per request, not the project's 30 s (set for a
    hung server, `tracking_server.HTTP_DEFAULTS`), which a dead-server test sets itself."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "180")
    mlflow.set_tracking_uri(server)
    yield MlflowClient(server)
    mlflow.set_tracking_uri(None)


def _experiment(client: MlflowClient) -> str:
    experiment = client.get_experiment_by_name("mle_hand_pipeline")
    return experiment.experiment_id if experiment else client.create_experiment("mle_hand_pipeline")


def test_an_unreachable_server_stops_a_run_before_anything_is_written(kedro_project, monkeypatch):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    started = time.monotonic()
    output = kedro_run(kedro_project, "--pipelines=train_rhd", check=False)
    assert time.monotonic() - started < 60
    assert f"the MLflow tracking server {uri} does not answer" in " ".join(output.split())
    assert not (kedro_project / "mlflow.db").exists() and not (kedro_project / "data").exists()
    # --env=server names the server too (default http://127.0.0.1:5000); MLFLOW_TRACKING_URI still wins
    output = kedro_run(kedro_project, "--pipelines=train_rhd", "--env=server", check=False)
    assert f"the MLflow tracking server {uri} does not answer" in " ".join(output.split())


@pytest.mark.slow
def test_train_on_the_server_logs_everything_registers_and_predicts(
    on_server, kedro_project, tiny_rhd, tmp_path
):
    client = on_server
    check_tracking_server(client.tracking_uri)  # answers
    (kedro_project / "conf/local/parameters_tiny.yml").write_text(TINY)
    preprocess_rhd(kedro_project, tiny_rhd["root"])
    kedro_run(
        kedro_project,
        "--pipelines=train_rhd",
        "--params=rhd.evaluate.register_model=rhd_tiny,rhd.evaluate.register_alias=champion",
    )
    assert not (kedro_project / "mlflow.db").exists()  # everything went to the server
    (run,) = client.search_runs([_experiment(client)], "attributes.run_name = 'train_rhd'")
    run_id = run.info.run_id
    assert run.info.status == "FINISHED" and run.data.params["rhd.train.epochs"] == "1"
    assert run.data.params["rhd.evaluate.register_model"] == "rhd_tiny"
    assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == [1]
    assert "test_nme" in run.data.metrics
    assert "checkpoints/best.pt" in artifact_paths(client, run_id)

    model = mlflow.pytorch.load_model(f"runs:/{run_id}/model")
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 21, 4)

    # the registry: version 1 of rhd_tiny, alias champion, both loadable; the method read back
    version = client.get_model_version_by_alias("rhd_tiny", "champion")
    assert version.version == "1" and version.run_id == run_id
    assert client.get_run(run_id).data.tags["registered_model"] == "models:/rhd_tiny/1"
    for uri in ("models:/rhd_tiny@champion", "models:/rhd_tiny/1"):
        source = resolve_model_source(uri)
        _, size = load_mlflow_pytorch(source)
        assert size == 64 and training_method(source) == "mle"

    out = tmp_path / "predicted"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mle_hand_pipeline.cli",
            "predict",
            str(IMAGE),
            "--model",
            f"runs:/{run_id}/model",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (out / "keypoints.csv").is_file()


@pytest.mark.slow
def test_a_server_lost_while_training_stops_the_run_with_its_checkpoints(
    on_server, tiny_rhd, tmp_path, monkeypatch
):
    """The store stops answering after the first epoch was saved (a dead port: what a killed server
    looks like to the client): the run stops within a minute with an error naming the URI and the
    resume; `train.resume` continues it against the server once it answers."""
    from mle_hand_pipeline.training.runs import train_method

    for key, value in HTTP_DEFAULTS.items():  # as settings.py sets them for `kedro run`
        monkeypatch.setenv(key, value)
    client = on_server
    dead = f"http://127.0.0.1:{free_port()}"
    params = {**TINY_MODEL_PARAMS, "method": "mle"}, {**TINY_TRAIN_PARAMS, "epochs": 2, "lr_milestones": [2]}
    run = client.create_run(_experiment(client))
    with pytest.raises(TrackingLostError, match=f"epoch 1 is saved .* {dead}.*train.resume=true"):
        train_method(
            tiny_rhd["hands"], tiny_rhd["crops"], tmp_path, *params, EpochLogger(run.info.run_id, dead)
        )
    (folder,) = (tmp_path / "mle").iterdir()
    assert (folder / "last.pt").is_file() and (folder / "best.pt").is_file()

    started = time.monotonic()  # what a dead server costs one epoch's logging
    with pytest.raises(TrackingLostError):
        EpochLogger(run.info.run_id, dead)({"epoch": 1, "val_nme": 0.5})
    assert time.monotonic() - started < 60  # the bounded retries (tracking_server.HTTP_DEFAULTS)

    history, _ = train_method(
        tiny_rhd["hands"],
        tiny_rhd["crops"],
        tmp_path,
        params[0],
        {**params[1], "resume": True},
        EpochLogger(run.info.run_id, client.tracking_uri),
    )
    assert history["epoch"].tolist() == [1, 2]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [2]


def test_a_dead_server_fails_check_with_its_uri():
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TrackingServerUnreachableError, match=uri):
        check_tracking_server(uri, timeout=2)
    check_tracking_server("sqlite:///mlflow.db")  # nothing to check
