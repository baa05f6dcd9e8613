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
from mle_hand_pipeline.datasets.crops import CropBox, crop_to_source
from mle_hand_pipeline.datasets.records import stack_column
from mle_hand_pipeline.evaluation.metrics import evaluate
from mle_hand_pipeline.evaluation.plots import plot_training_curves
from mle_hand_pipeline.export import PackedKeypoints, packed_signature
from mle_hand_pipeline.training.augment import AugmentSettings
from mle_hand_pipeline.training.data import HandCrops
from mle_hand_pipeline.training.engine import ModelSpec, TrainConfig, fit, load_model
from mle_hand_pipeline.training.inference import predict_crops

logger = logging.getLogger(__name__)


def model_spec(params: dict[str, Any]) -> ModelSpec:
    return ModelSpec(**{**params, "loss": dict(params.get("loss") or {})})


def train_config(params: dict[str, Any]) -> TrainConfig:
    augment = dict(params.get("augment") or {})
    if "scale" in augment:
        augment["scale"] = tuple(augment["scale"])
    return TrainConfig(**{**params, "augment": AugmentSettings(**augment),
                          "lr_milestones": tuple(params.get("lr_milestones", ()))})  # fmt: skip


def split(hands: pd.DataFrame, name: str) -> pd.DataFrame:
    subset = hands[hands["split"] == name].reset_index(drop=True)
    if subset.empty:
        raise ValueError(f"the hand table has no '{name}' crops; splits present: {sorted(hands['split'].unique())}")
    return subset


def train_model(
    hands: pd.DataFrame, crops_dir: Path, checkpoint_root: Path, preprocess_summary: dict[str, Any],
    model_params: dict[str, Any], train_params: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:  # fmt: skip
    """Train on the ``train`` crops, validating on ``val`` every epoch; metrics go to MLflow live.

    Returns the per-epoch history and a report with the checkpoint paths and timing.
    """
    spec, config = model_spec(model_params), train_config(train_params)
    checkpoint_dir = Path(checkpoint_root) / spec.method
    tracking.log_dict(preprocess_summary, "preprocess/summary.json")
    started = time.perf_counter()
    result = fit(spec, config, split(hands, "train"), split(hands, "val"), crops_dir, checkpoint_dir,
                 on_epoch_end=tracking.active_epoch_logger())  # fmt: skip
    wall_time = time.perf_counter() - started
    tracking.log_artifact(result.best_checkpoint, "checkpoints")
    best = result.history.loc[result.history["val_nme"].idxmin()]
    report = {
        "method": spec.method,
        "best_checkpoint": str(result.best_checkpoint),
        "last_checkpoint": str(result.last_checkpoint),
        "best_epoch": int(best["epoch"]),
        "best_val_nme": float(best["val_nme"]),
        "epochs": int(result.history["epoch"].max()),
        "train_wall_time_s": wall_time,
    }
    tracking.log_metrics({"train_wall_time_s": wall_time, "best_epoch": report["best_epoch"]})
    return result.history, report


def plot_history(history: pd.DataFrame) -> Figure:
    return plot_training_curves(history)


def evaluate_checkpoint(
    hands: pd.DataFrame, crops_dir: Path, training_report: dict[str, Any], params: dict[str, Any],
) -> tuple[dict[str, float], pd.DataFrame]:  # fmt: skip
    """Evaluate the chosen checkpoint on the ``test`` split; metrics are also logged as ``test_*``.

    Returns the metrics and a table of per-crop predictions (all stages, crop and source pixels).
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, spec = load_model(training_report[f"{params['checkpoint']}_checkpoint"], device)
    test = split(hands, "test")
    dataset = HandCrops(test, crops_dir)
    predictions = predict_crops(model, dataset, spec.input_size, device, batch_size=params["batch_size"])
    gt = dataset.keypoints.numpy().astype(np.float64)
    visible = dataset.visible.numpy()
    final = predictions.coords[:, -1]
    pred_src = _to_source(final, test)
    metrics = evaluate(
        np.moveaxis(predictions.coords, 1, 0), gt, visible, dataset.hand_size.numpy().astype(np.float64),
        pred_src=pred_src, gt_src=stack_column(test["keypoints_source"]),
        sigmas=None if predictions.sigmas is None else predictions.sigmas[:, -1],
    )  # fmt: skip
    tracking.log_metrics(metrics, prefix="test_")
    logger.info("test NME %.4f  PCK@0.2 %.4f  (%d crops)", metrics["nme"], metrics["pck_0.2"], len(test))
    table = test[["split", "sample_id", "image_id", "side", "crop_path"]].copy()
    table["pred_crop"] = list(predictions.coords.tolist())  # (T, K, 2) per crop
    table["pred_source"] = list(pred_src.tolist())
    table["sigma_crop"] = None if predictions.sigmas is None else list(predictions.sigmas[:, -1].tolist())
    return metrics, table


def _to_source(coords: np.ndarray, table: pd.DataFrame) -> np.ndarray:
    """(N, K, 2) crop pixels -> source pixels through each row's crop box and mirror flag."""
    return np.stack([
        crop_to_source(points, CropBox(row.box_x0, row.box_y0, row.box_side), row.crop_size, row.mirrored)
        for points, row in zip(coords, table.itertuples(index=False), strict=True)
    ])  # fmt: skip


def log_model(training_report: dict[str, Any], params: dict[str, Any]) -> None:
    """Log the chosen checkpoint as an MLflow PyTorch model: stage T only, no flows, (B, K, 4) out.

    Saved in MLflow's default ``pt2`` format (``torch.export``, no pickle) with a dynamic batch axis;
    ``mlflow.pytorch.load_model`` and ``mlflow.pyfunc.load_model`` both load it.
    """
    if not mlflow.active_run():
        return
    model, spec = load_model(training_report[f"{params['checkpoint']}_checkpoint"])
    example = np.zeros((2, 3, spec.input_size, spec.input_size), dtype=np.float32)
    mlflow.pytorch.log_model(PackedKeypoints(model), name="model", signature=packed_signature(spec.input_size),
                             input_example=example)  # fmt: skip
