"""MLflow helpers: a diverged run's metrics stay visible (as NaN) instead of disappearing."""

from __future__ import annotations

import logging
import math

import mlflow
import pytest

from mle_hand_pipeline.tracking import EpochLogger, log_metrics


def test_non_finite_metrics_are_logged_as_nan_with_a_warning(tmp_path, caplog):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        with mlflow.start_run() as run, caplog.at_level(logging.WARNING, "mle_hand_pipeline.tracking"):
            log_metrics({"nme": float("nan"), "loss": float("inf"), "pck": 0.5}, prefix="test_")
            EpochLogger(run.info.run_id, mlflow.get_tracking_uri())({"epoch": 1, "val_nme": -math.inf})
        metrics = mlflow.get_run(run.info.run_id).data.metrics
    finally:
        mlflow.set_tracking_uri(None)
    assert metrics["test_pck"] == 0.5
    # infinity would be stored as the largest float, which reads as a real value
    assert math.isnan(metrics["test_nme"]) and math.isnan(metrics["test_loss"])
    assert math.isnan(metrics["val_nme"])
    assert "test_loss, test_nme" in caplog.text and "val_nme" in caplog.text


def test_a_resumed_run_logs_the_epochs_its_checkpoint_already_trained(tmp_path):
    """Issue 38: after a resume at epoch 4, epoch 4's metrics were in neither run (saved, never logged)."""
    import torch

    from mle_hand_pipeline.tracking import tracked_run_dir
    from mle_hand_pipeline.training.run_dirs import claim_run_dir

    history = [{"epoch": e, "train_loss": 1.0 / e, "val_nme": 0.5 / e} for e in (1, 2, 3, 4)]
    try:
        with claim_run_dir(tmp_path, "killed", tracking_id=None) as run:
            torch.save({"history": history}, run.path / "last.pt")
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        with mlflow.start_run() as active, tracked_run_dir(tmp_path, resume=True) as run:
            assert run.resumed_from == "killed"
        client = mlflow.MlflowClient()
        logged = {m.step: m.value for m in client.get_metric_history(active.info.run_id, "val_nme")}
    finally:
        mlflow.set_tracking_uri(None)
    assert logged == {e: 0.5 / e for e in (1, 2, 3, 4)}


def test_the_experiment_is_marked_as_model_training_for_the_ui(tmp_path):
    """Issue 39: the experiment opened on MLflow's GenAI overview, not on its training runs."""
    from mle_hand_pipeline.tracking import mark_training_experiment

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        experiment = mlflow.create_experiment("made_before_the_tag")
        with mlflow.start_run(experiment_id=experiment):
            mark_training_experiment()
        tags = mlflow.MlflowClient().get_experiment(experiment).tags
    finally:
        mlflow.set_tracking_uri(None)
    assert tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_crop_store_splits_a_run_reads_are_its_dataset_inputs(tiny_rhd, tmp_path):
    """Issue 39: no dataset was logged as a run input, though every run trained on a checksummed store."""
    import json

    from mle_hand_pipeline.tracking import log_crop_store_inputs

    manifest = json.loads((tiny_rhd["crops"] / "manifest.json").read_text())
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        with mlflow.start_run() as run:
            log_crop_store_inputs(tiny_rhd["crops"], ("train", "val"))
        inputs = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    finally:
        mlflow.set_tracking_uri(None)
    logged = {i.dataset.name: i for i in inputs}
    assert set(logged) == {"crops/train", "crops/val"}
    train = logged["crops/train"]
    assert train.dataset.digest == manifest["splits"]["train"]["array"]["sha256"][:32]
    assert str(tiny_rhd["crops"].resolve()) in train.dataset.source
    tags = {t.key: t.value for t in train.tags}
    assert tags["mlflow.data.context"] == "training" and tags["rows"] == str(manifest["splits"]["train"]["n"])


def test_a_dataset_another_run_logged_at_the_same_moment_is_linked_not_fatal(tiny_rhd, tmp_path, monkeypatch):
    """A grid's two first cells logged the same new crop store at once: MLflow's SQL store looked it up,
    the other cell inserted it, and the insert failed on the unique key, failing the cell."""
    from mlflow.exceptions import MlflowException

    from mle_hand_pipeline.tracking import log_crop_store_inputs

    real, calls = mlflow.log_input, []

    def racing(dataset, **kwargs):
        calls.append(dataset.name)
        if len(calls) == 1:  # the other cell inserts it between this run's lookup and insert
            with mlflow.start_run(nested=True):
                real(dataset, **kwargs)
            raise MlflowException(
                "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, datasets.name, "
                "datasets.digest"
            )
        real(dataset, **kwargs)

    monkeypatch.setattr(mlflow, "log_input", racing)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        with mlflow.start_run() as run:
            log_crop_store_inputs(tiny_rhd["crops"], ("train",))
        inputs = mlflow.get_run(run.info.run_id).inputs.dataset_inputs

        def refused(dataset, **kwargs):
            raise MlflowException("RESOURCE_DOES_NOT_EXIST: no such run")

        monkeypatch.setattr(mlflow, "log_input", refused)
        with mlflow.start_run(), pytest.raises(MlflowException, match="no such run"):  # other errors fail
            log_crop_store_inputs(tiny_rhd["crops"], ("train",))
    finally:
        mlflow.set_tracking_uri(None)
    assert calls == ["crops/train", "crops/train"] and [i.dataset.name for i in inputs] == ["crops/train"]
