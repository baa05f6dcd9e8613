"""Nodes of the evaluate pipelines: a given checkpoint or MLflow model on the test split."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.tracking import MlflowClient
from torch.utils.data import DataLoader

from mle_hand_pipeline import tracking
from mle_hand_pipeline.evaluation import report as R
from mle_hand_pipeline.export import load_logged_model
from mle_hand_pipeline.pipelines.train.nodes import predict_checkpoint, report_outputs, split
from mle_hand_pipeline.training.augment import prepare_batch
from mle_hand_pipeline.training.data import HandCrops
from mle_hand_pipeline.training.inference import inference_device

logger = logging.getLogger(__name__)

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")  # runs:/..., models:/..., file:///..., s3://...


def is_mlflow_uri(model: str) -> bool:
    """``runs:/<id>/model``, ``models:/<name>/<version>`` or any ``scheme:/`` URI, as opposed to a path."""
    return bool(_URI.match(str(model)))


def mlflow_input_size(uri: str) -> int:
    """The crop side S of an MLflow model logged by :func:`...export.log_mlflow_model` ((-1, 3, S, S) in)."""
    shape = mlflow.models.get_model_info(uri).signature.inputs.inputs[0].shape
    return int(shape[-1])


def mlflow_method(uri: str) -> str:
    """The training run's ``*.model.method`` parameter for a ``runs:/`` URI, else ``"mlflow model"``."""
    match = re.match(r"^runs:/([^/]+)/", uri)
    if match:
        params = MlflowClient().get_run(match.group(1)).data.params
        for key, value in params.items():
            if key.endswith("model.method"):
                return value
    return "mlflow model"


@torch.no_grad()
def predict_mlflow_model(
    uri: str, table: pd.DataFrame, crops_dir: Path, batch_size: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Final-stage predictions of an MLflow model (``(B, K, 4)`` = x, y, sigma_x, sigma_y in input-crop
    pixels) mapped to stored-crop pixels: coords ``(N, 1, K, 2)``, sigmas ``(N, 1, K, 2)`` or None when
    the model's sigmas are all zero (methods without uncertainty)."""
    device = inference_device()
    model = load_logged_model(uri, device)
    input_size = mlflow_input_size(uri)
    dataset = HandCrops(table, crops_dir)
    outputs = []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        images, _, _ = prepare_batch(batch, input_size, device, settings=None, generator=None)
        n = len(images)
        if n == 1:  # torch.export specialises batch sizes 0 and 1: the dynamic batch axis starts at 2
            images = images.repeat(2, 1, 1, 1)
        outputs.append(model(images)[:n].float().cpu())
    packed = torch.cat(outputs).numpy().astype(np.float64) * (dataset.crop_size / input_size)
    coords, sigmas = packed[:, None, :, :2], packed[:, None, :, 2:]
    return coords, (None if not sigmas.any() else sigmas)


def evaluate_model(
    hands: pd.DataFrame, crops_dir: Path, params: dict[str, Any]
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Evaluate ``params["model"]`` (a checkpoint path or an MLflow model URI) on the ``test`` split.

    A checkpoint gives every stage; an MLflow model only the final one (its per-stage table has one
    row, stage ``"final"``, and there are no ``stage*`` metrics). Metrics go to MLflow as ``test_*``.
    """
    source = params.get("model")
    if not source:
        raise ValueError(
            "no model to evaluate: set `evaluate.model` to a checkpoint path or an MLflow model URI, "
            "e.g. --params=rhd.evaluate.model=data/06_models/rhd/mle/best.pt "
            "or --params=rhd.evaluate.model=runs:/<run_id>/model"
        )
    test = split(hands, "test")
    if is_mlflow_uri(source):
        coords, sigmas = predict_mlflow_model(source, test, crops_dir, params["batch_size"])
        method, all_stages = mlflow_method(source), False
        logger.info("MLflow model %s: final stage only (per-stage metrics need a checkpoint)", source)
    else:
        coords, sigmas, spec = predict_checkpoint(source, test, crops_dir, params["batch_size"])
        method, all_stages = spec.method, True
    tracking.log_dict(
        {"model": str(source), "method": method, "all_stages": all_stages}, "evaluation/source.json"
    )
    report = R.evaluate_predictions(test, coords, sigmas, all_stages=all_stages)
    report.predictions.insert(0, "method", method)
    return report_outputs(report)
