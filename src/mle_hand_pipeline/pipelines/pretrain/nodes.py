"""Nodes of the ``pretrain_<dataset>`` pipeline: glue between the renderer, the preprocessing template,
the training engine and the backbone checkpoint (``training.pretrained``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from matplotlib.figure import Figure

from mle_hand_pipeline import tracking
from mle_hand_pipeline.datasets.overlap import check_disjoint
from mle_hand_pipeline.evaluation.plots import plot_training_curves
from mle_hand_pipeline.synthetic import RHDConfig, generate_rhd
from mle_hand_pipeline.training.checkpoint import load_model
from mle_hand_pipeline.training.pretrained import backbone_checkpoint

logger = logging.getLogger(__name__)

HELD_OUT_SPLITS = ("val", "test")


def render_pretrain_set(
    render_params: dict[str, Any], seed: int, workers: int, evaluation_seed: int
) -> dict[str, Any]:
    """Render the pretraining set in RHD's layout into its own folder, with its own seed.

    Raises:
        ValueError: if ``seed`` equals the evaluation data's renderer seed (``synthetic_data.seed``):
            the same seed draws the same hands, so the sets would share images.
    """
    if int(seed) == int(evaluation_seed):
        raise ValueError(
            f"pretrain seed {seed} equals synthetic_data.seed: the pretraining set would repeat the "
            "evaluation data's images; choose another pretrain_rhd.seed"
        )
    return generate_rhd(RHDConfig.from_params(render_params), seed=int(seed), workers=int(workers))


def check_no_held_out_images(
    render_summary: dict[str, Any], evaluation_hands: pd.DataFrame, evaluation_root: str
) -> dict[str, Any]:
    """Check that no pretraining image has the pixels of a val/test source image of the evaluation data.

    Returns:
        Counts (``n_pretrain_images``, ``n_held_out_images``, ``n_shared`` = 0) and both seeds.
    """
    pretrain_root = Path(render_summary["root"])
    pretrain_images = sorted(pretrain_root.glob("*/color/*.png"))
    held_out = evaluation_hands[evaluation_hands["split"].isin(HELD_OUT_SPLITS)]
    held_out_images = sorted({Path(evaluation_root) / p for p in held_out["source_image"]})
    if not held_out_images:
        raise ValueError(
            f"the evaluation hand table has no {'/'.join(HELD_OUT_SPLITS)} crops to check the pretraining "
            "set against; run the dataset's preprocessing first"
        )
    result = check_disjoint(pretrain_images, held_out_images)
    logger.info(
        "pretraining set: %d images, none among the %d validation/test images of %s",
        result["n_pretrain_images"],
        result["n_held_out_images"],
        evaluation_root,
    )
    return {**result, "pretrain_seed": render_summary["seed"], "evaluation_root": str(evaluation_root)}


def pretrain_preprocess_settings(
    dataset_settings: dict[str, Any], overrides: dict[str, Any]
) -> dict[str, Any]:
    """The evaluation data's preprocessing block with the pretraining overrides (same crops)."""
    return {**dataset_settings, **overrides}


def rendered_root(render_summary: dict[str, Any]) -> str:
    """The rendered set's folder, for the preprocessing nodes (they run after the rendering)."""
    return str(render_summary["root"])


def pretrain(
    hands: pd.DataFrame,
    crops_dir: Path,
    checkpoint_root: Path,
    held_out_check: dict[str, Any],
    model_params: dict[str, Any],
    train_params: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Train the pretraining network (its validation metrics go to MLflow live, like any run).

    ``held_out_check`` is only a dependency: training starts after the overlap check passed.
    """
    history, report = tracking.train_tracked(hands, crops_dir, checkpoint_root, model_params, train_params)
    return history, {**report, "held_out_check": held_out_check}


def extract_backbone(training_report: dict[str, Any], render_summary: dict[str, Any]) -> dict[str, Any]:
    """The backbone checkpoint of the best pretraining epoch (weights only, plus where they came from)."""
    model, spec = load_model(training_report["best_checkpoint"])
    active = mlflow.active_run()
    info = {
        "method": spec.method,
        "input_size": spec.input_size,
        "source_checkpoint": training_report["best_checkpoint"],
        "best_epoch": training_report["best_epoch"],
        "best_val_nme": training_report["best_val_nme"],
        "render_seed": render_summary["seed"],
        "render_root": render_summary["root"],
        "mlflow_run_id": active.info.run_id if active else None,
    }
    logger.info("backbone checkpoint: %s from %s epoch %d", spec.backbone, spec.method, info["best_epoch"])
    return backbone_checkpoint(model, info)


def plot_pretrain_history(history: pd.DataFrame) -> Figure:
    return plot_training_curves(history, title="backbone pretraining")
