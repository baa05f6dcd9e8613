"""MLflow helpers: a diverged run's metrics stay visible (as NaN) instead of disappearing."""

from __future__ import annotations

import logging
import math

import mlflow

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
