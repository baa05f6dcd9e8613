"""One training or evaluation run over a hand table: what the train, evaluate and compare pipelines share.

Plain library code (no Kedro, no MLflow): metrics reach a tracker through the ``on_epoch_end`` and
``log_metrics`` callbacks, which the pipeline nodes point at the active MLflow run.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mle_hand_pipeline.datasets.crop_store import CropStore
from mle_hand_pipeline.evaluation.report import EvaluationReport, evaluate_predictions
from mle_hand_pipeline.machine import describe_machine
from mle_hand_pipeline.training.checkpoint import ModelSpec, check_resumable, check_warm_start, load_model
from mle_hand_pipeline.training.data import HandCrops
from mle_hand_pipeline.training.engine import fit
from mle_hand_pipeline.training.inference import inference_device, predict_crops
from mle_hand_pipeline.training.label_noise import LabelNoise, corrupt_labels
from mle_hand_pipeline.training.run_dirs import RunDirClaim, claim_local_run_dir
from mle_hand_pipeline.training.validation import validate_model_params, validate_train_params

logger = logging.getLogger(__name__)

MetricsCallback = Callable[[dict[str, float]], None]
# logged at the end of training: the epoch of the checkpoint the run evaluates and its validation figures
BEST_EPOCH_METRICS = ("best_epoch", "best_val_nme", "best_val_pck_0.2")


def split(hands: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of split ``name`` (train, val or test), re-indexed; an error names the table's splits."""
    require_splits(hands, (name,))
    return hands[hands["split"] == name].reset_index(drop=True)


def require_splits(hands: pd.DataFrame, names: tuple[str, ...] = ("train", "val", "test")) -> None:
    """Refuse a hand table with no crops in one of the splits ``names`` a run needs: the train node
    checks all three before training (an empty test split would otherwise fail only after it).

    The error names the split, the dataset, and its size: crops and samples, per split.
    """
    counts = hands["split"].value_counts()
    missing = [name for name in names if counts.get(name, 0) == 0]
    if missing:
        dataset = str(hands["dataset"].iloc[0]) if len(hands) and "dataset" in hands else "the"
        per_split = ", ".join(f"{name} {int(counts[name])}" for name in sorted(counts.index)) or "none"
        samples = f" of {hands['sample_id'].nunique()} samples" if "sample_id" in hands else ""
        raise ValueError(
            f"the {dataset} hand table has no '{missing[0]}' crops, which this run needs: "
            f"{len(hands)} crops{samples} (per split: {per_split}). Preprocess more samples or with "
            f"split settings that leave '{missing[0]}' some ({dataset}.preprocess in "
            "conf/base/parameters_preprocess.yml)"
        )


def train_method(
    hands: pd.DataFrame,
    crops_dir: Path,
    checkpoint_root: Path,
    model_params: dict[str, Any],
    train_params: dict[str, Any],
    on_epoch_end: Callable[[dict], None] | None = None,
    log_metrics: MetricsCallback | None = None,
    claim_run_dir: RunDirClaim = claim_local_run_dir,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Train the ``model`` block's method on the ``train`` crops, validating on ``val`` every epoch.

    Both blocks are validated first (:mod:`.validation`: errors name the parameter), so nothing is
    written for a bad configuration. Checkpoints go to the run's own folder
    ``checkpoint_root/<method>/<run_id>/`` given by ``claim_run_dir`` (:mod:`.run_dirs`; the train node
    names it after the MLflow run); ``train.resume`` true continues the newest interrupted run of the
    method, a run id that run. ``train_params["label_noise"]`` (see
    :mod:`.label_noise`) corrupts the TRAINING labels before :func:`~.engine.fit`; validation and test
    labels stay clean. ``on_epoch_end`` receives each epoch's history row (see :func:`~.engine.fit`);
    ``log_metrics`` receives the ``label_noise_*`` statistics before training and
    ``train_wall_time_s``/``best_epoch`` after it.

    Returns the per-epoch history and a report: method, checkpoint paths, best epoch and its
    validation NME, epochs, wall time, the label-noise statistics and the machine
    (:func:`~mle_hand_pipeline.machine.describe_machine`: CPU results are bit-identical per machine kind).
    """
    spec, config = validate_model_params(model_params), validate_train_params(train_params)
    if log_metrics is not None and spec.init_checkpoint:
        log_metrics(check_warm_start(spec))  # init_loaded_tensors, init_fresh_tensors
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
    if log_metrics is not None:
        log_metrics(
            {
                f"label_noise_{k}": noise_stats[k]
                for k in ("n_jittered", "n_outliers", "mean_shift_px", "label_nme")
            }
        )
    if config.batch_size > len(train_table):  # before a run folder exists (fit checks per process again)
        raise ValueError(
            f"train.batch_size={config.batch_size} is larger than the {len(train_table)} training crops: "
            "lower it, or preprocess more images"
        )
    # The crops' pixels are proven before a run folder exists (quick, or every byte with verify_crops: full).
    store = crops_dir if isinstance(crops_dir, CropStore) else CropStore(crops_dir)
    store.verify_all(full=config.verify_crops == "full")
    crops_dir = store
    started = time.perf_counter()
    accept = functools.partial(check_resumable, spec=spec)  # before the folder it continues is marked
    with claim_run_dir(Path(checkpoint_root) / spec.method, config.resume, accept=accept) as run:
        result = fit(
            spec,
            replace(config, resume=run.resumed_from is not None),
            train_table,
            split(hands, "val"),
            crops_dir,
            run.path,
            on_epoch_end=on_epoch_end,
        )
    wall_time = time.perf_counter() - started
    best = result.history.loc[result.history["val_nme"].idxmin()]
    report = {
        "method": spec.method,
        "run_id": run.run_id,
        "resumed_from": run.resumed_from,
        "best_checkpoint": str(result.best_checkpoint),
        "last_checkpoint": str(result.last_checkpoint),
        "best_epoch": int(best["epoch"]),
        "best_val_nme": float(best["val_nme"]),
        "best_val_pck_0.2": float(best["val_pck_0.2"]),
        "epochs": int(result.history["epoch"].max()),
        "train_wall_time_s": wall_time,
        "label_noise": noise_stats,
        "machine": describe_machine(),
    }
    if log_metrics is not None:
        # the validation figures of the checkpoint the run evaluates: what a choice between runs reads
        log_metrics({"train_wall_time_s": wall_time, **{k: report[k] for k in BEST_EPOCH_METRICS}})
    return result.history, report


def predict_checkpoint(
    path: str | Path, table: pd.DataFrame, crops_dir: Path, batch_size: int
) -> tuple[np.ndarray, np.ndarray | None, ModelSpec]:
    """All stages' predictions of a ``best.pt``/``last.pt`` checkpoint on ``table``'s crops.

    Returns coords ``(N, T, K, 2)`` and sigmas ``(N, T, K, 2)`` (None without uncertainty) in
    stored-crop pixels, and the checkpoint's :class:`ModelSpec`. Runs on CUDA when present.
    """
    device = inference_device()
    model, spec = load_model(path, device)
    predictions = predict_crops(
        model, HandCrops(table, crops_dir), spec.input_size, device, batch_size=batch_size
    )
    return predictions.coords, predictions.sigmas, spec


def evaluate_on_test(
    hands: pd.DataFrame, crops_dir: Path, checkpoint: str | Path, batch_size: int
) -> EvaluationReport:
    """The evaluation report of a checkpoint on the ``test`` split (predictions tagged with the method)."""
    test = split(hands, "test")
    coords, sigmas, spec = predict_checkpoint(checkpoint, test, crops_dir, batch_size)
    report = evaluate_predictions(test, coords, sigmas)
    report.predictions.insert(0, "method", spec.method)
    return report
