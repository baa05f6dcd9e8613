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
from mle_hand_pipeline.parameters import EvaluateParams
from mle_hand_pipeline.training.checkpoint import load_model
from mle_hand_pipeline.training.run_dirs import BEST_CHECKPOINT, LAST_CHECKPOINT
from mle_hand_pipeline.training.runs import evaluate_on_test, require_splits

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
    (:func:`...training.runs.train_method`). A table without train, val or test crops (the run
    evaluates on test after training) is refused before anything is written.
    """
    require_splits(hands, ("train", "val", "test"))
    tracking.log_dict(preprocess_summary, "preprocess/summary.json")
    history, report = tracking.train_tracked(hands, crops_dir, checkpoint_root, model_params, train_params)
    return history, report


def plot_history(history: pd.DataFrame) -> Figure:
    return plot_training_curves(history)


def select_model(training_report: dict[str, Any], params: dict[str, Any]) -> Path:
    """The checkpoint the run publishes as its model (``evaluate.checkpoint``: best | last)."""
    return Path(training_report[f"{EvaluateParams.of(params).checkpoint}_checkpoint"])


def evaluate_checkpoint(
    hands: pd.DataFrame, crops_dir: Path, model: Path, params: dict[str, Any]
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Evaluate the checkpoint file ``model`` on the ``test`` split.

    Metrics are also logged as ``test_*``. Returns the metrics (with ``run``: the MLflow run and the
    checkpoint they belong to), the per-crop predictions (all stages, crop and source pixels), and the
    per-keypoint, per-stage, PCK-curve, calibration and per-crop metric tables.
    """
    tracking.log_crop_store_inputs(crops_dir, ("test",))
    report = evaluate_on_test(hands, crops_dir, model, EvaluateParams.of(params).batch_size)
    tracking.log_metrics(report.metrics, prefix="test_")
    logger.info("test %s", report.summary())
    metrics, *tables = report.outputs()
    return ({**metrics, "run": {"mlflow_run_id": tracking.active_run_id(), "model": str(model)}}, *tables)


def log_model(model: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Log the checkpoint file ``model`` to the active MLflow run as the model ``model`` (:mod:`..export`),
    unless ``evaluate.log_model`` is false (a comparison's cells skip the export by default), and
    register it as a new version of ``evaluate.register_model`` when set, with the alias
    ``evaluate.register_alias`` (:func:`...tracking.register_logged_model`). Returns what was done
    (``logged``, ``registered``): a node after it may then remove the checkpoint file."""
    evaluate = EvaluateParams.of(params)
    if mlflow.active_run() and evaluate.log_model:
        network, spec = load_model(model)
        log_mlflow_model(network, spec.input_size)
        if evaluate.register_model:
            tracking.register_logged_model(evaluate.register_model, evaluate.register_alias)
        return {"logged": True, "registered": evaluate.register_model}
    if evaluate.register_model:
        logger.warning(
            "evaluate.register_model=%s: nothing registered (%s)",
            evaluate.register_model,
            "evaluate.log_model is false" if mlflow.active_run() else "no MLflow run",
        )
    return {"logged": False, "registered": None}


def prune_checkpoints(
    training_report: dict[str, Any], params: dict[str, Any], test_metrics: dict, logged_model: dict
) -> None:
    """Apply ``evaluate.keep_checkpoints`` to the run folder once the run evaluated and logged its model
    (``test_metrics`` and ``logged_model`` are taken so that this node runs last): ``all`` keeps both,
    ``best`` removes ``last.pt``, ``none`` both (the published ``<dataset>.model``, a hard link, and
    MLflow keep the evaluated one). A run that failed never gets here: its folder stays resumable."""
    keep = EvaluateParams.of(params).keep_checkpoints
    if keep == "all":
        return
    folder = Path(training_report["last_checkpoint"]).parent
    names = (LAST_CHECKPOINT,) if keep == "best" else (LAST_CHECKPOINT, BEST_CHECKPOINT)
    freed = 0
    for name in names:
        path = folder / name
        if path.is_file():
            freed += path.stat().st_size
            path.unlink()
    removed = " and ".join(names)
    logger.info("keep_checkpoints=%s: removed %s from %s (%.1f MB)", keep, removed, folder, freed / 1e6)
