"""Nodes of the evaluate pipelines: a given checkpoint or MLflow model on the test split."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.tracking import MlflowClient

from mle_hand_pipeline import tracking
from mle_hand_pipeline.evaluation.report import evaluate_predictions
from mle_hand_pipeline.model_source import (
    CHECKPOINT,
    MLFLOW,
    ModelSource,
    load_mlflow_pytorch,
    resolve_model_source,
)
from mle_hand_pipeline.training.inference import inference_device
from mle_hand_pipeline.training.runs import predict_checkpoint, predict_packed, split

logger = logging.getLogger(__name__)


def mlflow_method(source: ModelSource) -> str:
    """The training run's ``*.model.method`` parameter for a run's model, else ``"mlflow model"``."""
    if source.run_id:
        params = MlflowClient().get_run(source.run_id).data.params
        for key, value in params.items():
            if key.endswith("model.method"):
                return value
    return "mlflow model"


def evaluate_model(
    hands: pd.DataFrame, crops_dir: Path, params: dict[str, Any]
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Evaluate ``params["model"]`` (a checkpoint path or an MLflow model, see
    :mod:`...model_source`) on the ``test`` split.

    A checkpoint gives every stage; an MLflow model only the final one (its per-stage table has one
    row, stage ``"final"``, and there are no ``stage*`` metrics). Metrics go to MLflow as ``test_*``.
    """
    if not params.get("model"):
        raise ValueError(
            "no model to evaluate: set `evaluate.model` to a checkpoint path or an MLflow model URI, "
            "e.g. --params=rhd.evaluate.model=data/06_models/rhd/model.pt (the newest published model) "
            "or --params=rhd.evaluate.model=runs:/<run_id>/model"
        )
    source = resolve_model_source(params["model"])
    test = split(hands, "test")
    if source.kind == MLFLOW:
        device = inference_device()
        model, input_size = load_mlflow_pytorch(source, device)
        coords, sigmas = predict_packed(model, input_size, test, crops_dir, params["batch_size"], device)
        method, all_stages = mlflow_method(source), False
        logger.info("MLflow model %s: final stage only (per-stage metrics need a checkpoint)", source.name)
    elif source.kind == CHECKPOINT:
        coords, sigmas, spec = predict_checkpoint(source.location, test, crops_dir, params["batch_size"])
        method, all_stages = spec.method, True
    else:
        raise ValueError(
            f"evaluate.model={source.name} is an ONNX file: evaluate a checkpoint or an MLflow model"
        )
    tracking.log_dict(
        {"model": source.name, "method": method, "all_stages": all_stages}, "evaluation/source.json"
    )
    report = evaluate_predictions(test, coords, sigmas, all_stages=all_stages)
    report.predictions.insert(0, "method", method)
    tracking.log_metrics(report.metrics, prefix="test_")
    logger.info("test %s", report.summary())
    return report.outputs()
