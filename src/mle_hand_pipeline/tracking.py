"""Thin MLflow helpers for what kedro-mlflow's catalog datasets cannot do: live per-epoch metrics
(also from DDP worker processes) and files produced inside a node. Everything is a no-op when no
MLflow run is active, so nodes also run under a plain ``SequentialRunner`` in tests."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient


class EpochLogger:
    """Logs each epoch's history row to a given run; picklable, so DDP rank 0 can call it."""

    def __init__(self, run_id: str, tracking_uri: str):
        self.run_id = run_id
        self.tracking_uri = tracking_uri

    def __call__(self, row: dict[str, Any]) -> None:
        client = MlflowClient(self.tracking_uri)
        step = int(row["epoch"])
        for key, value in row.items():
            if key != "epoch" and isinstance(value, int | float) and math.isfinite(value):
                client.log_metric(self.run_id, key, float(value), step=step)


def active_epoch_logger() -> EpochLogger | None:
    run = mlflow.active_run()
    return EpochLogger(run.info.run_id, mlflow.get_tracking_uri()) if run else None


def log_metrics(metrics: dict[str, float], prefix: str = "") -> None:
    if mlflow.active_run():
        mlflow.log_metrics({f"{prefix}{k}": float(v) for k, v in metrics.items() if math.isfinite(v)})


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    if mlflow.active_run():
        mlflow.log_artifact(str(path), artifact_path)


def log_dict(data: dict[str, Any], artifact_file: str) -> None:
    if mlflow.active_run():
        mlflow.log_dict(data, artifact_file)


def tag_run(params: dict[str, Any]) -> None:
    """Set the ``tracking`` parameter block on the active run: ``tags`` (``{name: value}``) and
    ``run_name`` (when set). A comparison tags each of its training runs this way."""
    if not mlflow.active_run():
        return
    tags = {str(k): str(v) for k, v in (params.get("tags") or {}).items()}
    if params.get("run_name"):
        tags["mlflow.runName"] = str(params["run_name"])
    mlflow.set_tags(tags)
