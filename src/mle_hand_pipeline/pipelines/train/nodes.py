"""Nodes of the training pipelines: glue between the catalog, the training engine and MLflow."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from mle_hand_pipeline import tracking
from mle_hand_pipeline.evaluation import report as R
from mle_hand_pipeline.evaluation.plots import plot_training_curves
from mle_hand_pipeline.export import log_mlflow_model
from mle_hand_pipeline.training.augment import AugmentSettings
from mle_hand_pipeline.training.data import HandCrops
from mle_hand_pipeline.training.engine import ModelSpec, TrainConfig, fit, load_model
from mle_hand_pipeline.training.inference import predict_crops
from mle_hand_pipeline.training.label_noise import LabelNoise, corrupt_labels

logger = logging.getLogger(__name__)

# Outputs of the evaluation nodes, in order (train: `test_*`, evaluate: `evaluation_*` datasets).
EVALUATION_OUTPUTS = ("metrics", "predictions", "per_keypoint", "per_stage", "pck_curve", "calibration")
EVALUATION_FIGURES = ("pck_curve", "per_keypoint_nme", "per_stage_pck", "calibration", "qualitative")


def model_spec(params: dict[str, Any]) -> ModelSpec:
    """The ``model`` block as a :class:`ModelSpec` (loss options another method's loss takes are ignored
    by :func:`~mle_hand_pipeline.models.build_loss`, so one block serves every method)."""
    return ModelSpec(**params)


def train_config(params: dict[str, Any]) -> TrainConfig:
    """The ``train`` block as a :class:`TrainConfig` (``label_noise`` is applied to the labels, not here)."""
    params = {k: v for k, v in params.items() if k != "label_noise"}
    augment = dict(params.get("augment") or {})
    if "scale" in augment:
        augment["scale"] = tuple(augment["scale"])
    return TrainConfig(
        **{
            **params,
            "augment": AugmentSettings(**augment),
            "lr_milestones": tuple(params.get("lr_milestones", ())),
        }
    )


def split(hands: pd.DataFrame, name: str) -> pd.DataFrame:
    subset = hands[hands["split"] == name].reset_index(drop=True)
    if subset.empty:
        raise ValueError(
            f"the hand table has no '{name}' crops; splits present: {sorted(hands['split'].unique())}"
        )
    return subset


def train_model(
    hands: pd.DataFrame,
    crops_dir: Path,
    checkpoint_root: Path,
    preprocess_summary: dict[str, Any],
    model_params: dict[str, Any],
    train_params: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Train on the ``train`` crops, validating on ``val`` every epoch; metrics go to MLflow live.

    Returns the per-epoch history and a report with the checkpoint paths, timing and label-noise stats.
    """
    tracking.log_dict(preprocess_summary, "preprocess/summary.json")
    history, report = train_method(hands, crops_dir, checkpoint_root, model_params, train_params)
    tracking.log_artifact(report["best_checkpoint"], "checkpoints")
    return history, report


def train_method(
    hands: pd.DataFrame,
    crops_dir: Path,
    checkpoint_root: Path,
    model_params: dict[str, Any],
    train_params: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """:func:`train_model` without the artifacts: checkpoints go to ``checkpoint_root/<method>/``.

    ``train_params["label_noise"]`` (see :mod:`...training.label_noise`) corrupts the TRAINING labels
    before :func:`fit`; validation and test labels stay clean. Its statistics go to the report and
    to the active MLflow run as ``label_noise_*`` metrics.
    """
    spec, config = model_spec(model_params), train_config(train_params)
    noise = LabelNoise.from_params(train_params.get("label_noise"))
    train_table, noise_stats = corrupt_labels(split(hands, "train"), noise)
    if noise.active:
        logger.info(
            "label noise on the training labels: %d jittered, %d outliers of %d visible keypoints "
            "(label NME %.4f)",
            noise_stats["n_jittered"],
            noise_stats["n_outliers"],
            noise_stats["n_visible"],
            noise_stats["label_nme"],
        )
    tracking.log_metrics(
        {k: noise_stats[k] for k in ("n_jittered", "n_outliers", "mean_shift_px", "label_nme")},
        prefix="label_noise_",
    )
    checkpoint_dir = Path(checkpoint_root) / spec.method
    started = time.perf_counter()
    result = fit(
        spec,
        config,
        train_table,
        split(hands, "val"),
        crops_dir,
        checkpoint_dir,
        on_epoch_end=tracking.active_epoch_logger(),
    )
    wall_time = time.perf_counter() - started
    best = result.history.loc[result.history["val_nme"].idxmin()]
    report = {
        "method": spec.method,
        "best_checkpoint": str(result.best_checkpoint),
        "last_checkpoint": str(result.last_checkpoint),
        "best_epoch": int(best["epoch"]),
        "best_val_nme": float(best["val_nme"]),
        "epochs": int(result.history["epoch"].max()),
        "train_wall_time_s": wall_time,
        "label_noise": noise_stats,
    }
    tracking.log_metrics({"train_wall_time_s": wall_time, "best_epoch": report["best_epoch"]})
    return result.history, report


def plot_history(history: pd.DataFrame) -> Figure:
    return plot_training_curves(history)


def predict_checkpoint(
    path: str | Path, table: pd.DataFrame, crops_dir: Path, batch_size: int
) -> tuple[np.ndarray, np.ndarray | None, ModelSpec]:
    """All stages' predictions of a ``best.pt``/``last.pt`` checkpoint on ``table``'s crops (crop px)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, spec = load_model(path, device)
    predictions = predict_crops(
        model, HandCrops(table, crops_dir), spec.input_size, device, batch_size=batch_size
    )
    return predictions.coords, predictions.sigmas, spec


def report_outputs(report: R.EvaluationReport, prefix: str = "test_") -> tuple:
    """Log ``report.metrics`` to the active MLflow run as ``<prefix><name>`` and return the node outputs
    (metrics, predictions, per_keypoint, per_stage, pck_curve, calibration)."""
    tracking.log_metrics(report.metrics, prefix=prefix)
    m = report.metrics
    logger.info(
        "test NME %.4f  PCK@0.2 %.4f  AUC %.4f  EPE %.2f px  (%d crops)",
        m["nme"],
        m["pck_0.2"],
        m["auc_0.2"],
        m["epe_px"],
        int(m["n_crops"]),
    )
    return (
        report.metrics,
        report.predictions,
        report.per_keypoint,
        report.per_stage,
        report.pck_curve,
        report.calibration,
    )


def evaluate_on_test(
    hands: pd.DataFrame, crops_dir: Path, checkpoint: str | Path, batch_size: int
) -> R.EvaluationReport:
    """The evaluation report of a checkpoint on the ``test`` split (predictions tagged with the method)."""
    test = split(hands, "test")
    coords, sigmas, spec = predict_checkpoint(checkpoint, test, crops_dir, batch_size)
    report = R.evaluate_predictions(test, coords, sigmas)
    report.predictions.insert(0, "method", spec.method)
    return report


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
    return report_outputs(evaluate_on_test(hands, crops_dir, checkpoint, params["batch_size"]))


def plot_evaluation(
    predictions: pd.DataFrame,
    per_keypoint: pd.DataFrame,
    per_stage: pd.DataFrame,
    pck_curve: pd.DataFrame,
    calibration: pd.DataFrame,
    crops_dir: Path,
) -> tuple[Figure, Figure, Figure, Figure, Figure]:
    """PCK curve, per-keypoint NME bars, per-stage PCK, calibration and the qualitative grid."""
    label = str(predictions["method"].iloc[0])
    return (
        R.pck_curve_figure(pck_curve, label),
        R.per_keypoint_figure(per_keypoint, label),
        R.per_stage_figure(per_stage, label),
        R.calibration_figure(calibration, label),
        R.qualitative_figure(predictions, crops_dir, label),
    )


def log_model(training_report: dict[str, Any], params: dict[str, Any]) -> None:
    """Log the chosen checkpoint to the active MLflow run as the model ``model`` (see :mod:`..export`),
    unless ``params["log_model"]`` is false (a comparison's cells skip the export by default)."""
    if mlflow.active_run() and params.get("log_model", True):
        model, spec = load_model(training_report[f"{params['checkpoint']}_checkpoint"])
        log_mlflow_model(model, spec.input_size)
