"""Nodes of the training pipelines: glue between the catalog, :mod:`...training.runs` and MLflow."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from matplotlib.figure import Figure

from mle_hand_pipeline import tracking
from mle_hand_pipeline.evaluation.plots import plot_training_curves
from mle_hand_pipeline.export import log_mlflow_model
from mle_hand_pipeline.training.checkpoint import load_model
from mle_hand_pipeline.training.runs import evaluate_on_test, train_method

logger = logging.getLogger(__name__)


def train_model(
    hands: pd.DataFrame,
    crops_dir: Path,
    checkpoint_root: Path,
    preprocess_summary: dict[str, Any],
    model_params: dict[str, Any],
    train_params: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Train on the ``train`` crops, validating on ``val`` every epoch; metrics go to MLflow live.

    Returns the per-epoch history and a report with the checkpoint paths, timing and label-noise stats
    (:func:`...training.runs.train_method`).
    """
    tracking.log_dict(preprocess_summary, "preprocess/summary.json")
    history, report = train_method(
        hands,
        crops_dir,
        checkpoint_root,
        model_params,
        train_params,
        on_epoch_end=tracking.active_epoch_logger(),
        log_metrics=tracking.log_metrics,
    )
    tracking.log_artifact(report["best_checkpoint"], "checkpoints")
    return history, report


def plot_history(history: pd.DataFrame) -> Figure:
    return plot_training_curves(history)


def evaluate_checkpoint(
    hands: pd.DataFrame,
    crops_dir: Path,
    training_report: dict[str, Any],
    params: dict[str, Any],
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Evaluate the chosen checkpoint (``params["checkpoint"]``: best | last) on the ``test`` split.

    Metrics are also logged as ``test_*``. Returns the metrics, the per-crop predictions (all stages,
    crop and source pixels), and the per-keypoint, per-stage, PCK-curve and calibration tables.
    """
    checkpoint = training_report[f"{params['checkpoint']}_checkpoint"]
    report = evaluate_on_test(hands, crops_dir, checkpoint, params["batch_size"])
    tracking.log_metrics(report.metrics, prefix="test_")
    logger.info("test %s", report.summary())
    return report.outputs()


def log_model(training_report: dict[str, Any], params: dict[str, Any]) -> None:
    """Log the chosen checkpoint to the active MLflow run as the model ``model`` (see :mod:`..export`)."""
    if mlflow.active_run():
        model, spec = load_model(training_report[f"{params['checkpoint']}_checkpoint"])
        log_mlflow_model(model, spec.input_size)
