"""Nodes of the evaluate pipelines: a given checkpoint or MLflow model on the test split."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from mle_hand_pipeline import tracking
from mle_hand_pipeline.evaluation.report import evaluate_predictions
from mle_hand_pipeline.model_source import predict_crop_table
from mle_hand_pipeline.parameters import EvaluateParams
from mle_hand_pipeline.training.runs import split

logger = logging.getLogger(__name__)


def evaluate_model(
    hands: pd.DataFrame, crops_dir: Path, params: dict[str, Any]
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Evaluate ``evaluate.model`` (a checkpoint path or an MLflow model, see
    :mod:`...model_source`) on the ``test`` split.

    A checkpoint gives every stage; an MLflow model only the final one (its per-stage table has one
    row, stage ``"final"``, and there are no ``stage*`` metrics). Metrics go to MLflow as ``test_*``.
    """
    evaluate = EvaluateParams.of(params)
    if not evaluate.model:
        raise ValueError(
            "no model to evaluate: set `evaluate.model` to a checkpoint path or an MLflow model URI, "
            "e.g. --params=rhd.evaluate.model=data/06_models/rhd/model.pt (the newest published model) "
            "or --params=rhd.evaluate.model=runs:/<run_id>/model"
        )
    test = split(hands, "test")
    predicted = predict_crop_table(evaluate.model, test, crops_dir, evaluate.batch_size)
    source = predicted.source
    tracking.log_crop_store_inputs(crops_dir, ("test",))
    tracking.log_dict(
        {
            "model": source.name,
            "resolved": source.location,
            "method": predicted.method,
            "all_stages": predicted.all_stages,
        },
        "evaluation/source.json",
    )
    tracking.tag_run({"tags": {"evaluated_model": source.label}})
    report = evaluate_predictions(test, predicted.coords, predicted.sigmas, all_stages=predicted.all_stages)
    report.predictions.insert(0, "method", predicted.method)
    tracking.log_metrics(report.metrics, prefix="test_")
    logger.info("test %s", report.summary())
    metrics, *tables = report.outputs()
    run = {"mlflow_run_id": tracking.active_run_id(), "model": source.label}
    return ({**metrics, "run": run}, *tables)
