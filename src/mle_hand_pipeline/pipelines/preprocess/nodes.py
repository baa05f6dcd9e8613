"""Nodes of the preprocessing pipelines (``freihand_preprocess``, ``rhd_preprocess``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from mle_hand_pipeline.datasets.crop_store import CropStore
from mle_hand_pipeline.datasets.cropping import CropPlan, CropSettings
from mle_hand_pipeline.datasets.freihand import read_freihand
from mle_hand_pipeline.datasets.records import filter_visible, stack_column
from mle_hand_pipeline.datasets.rhd import read_rhd
from mle_hand_pipeline.evaluation.plots import keypoint_grid

logger = logging.getLogger(__name__)


def read_freihand_annotations(root: str, params: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """FreiHAND labels projected to 2D, one row per image, plus rejected samples."""
    return read_freihand(
        root,
        split_ratios=params["split_ratios"],
        seed=params["seed"],
        use_evaluation_set=params["use_evaluation_set"],
        on_bad_sample=params["on_bad_sample"],
    )


def read_rhd_annotations(root: str, params: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """RHD labels, one row per hand (left and right) in the common keypoint order, plus rejections."""
    return read_rhd(
        root,
        parts=params["parts"],
        val_ratio=params["val_ratio"],
        seed=params["seed"],
        on_bad_sample=params["on_bad_sample"],
    )


def keep_visible(annotations: pd.DataFrame, params: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep hands with at least ``min_visible`` visible keypoints; the others become rejections."""
    return filter_visible(annotations, params["min_visible"])


def make_crops(annotations: pd.DataFrame, raw_root: str, params: dict[str, Any]) -> CropPlan:
    """What to crop and how; the crop store dataset writes it (``<dataset>.crops``, all or nothing)."""
    return CropPlan(
        annotations,
        str(raw_root),
        CropSettings.from_params(params["crop"]),
        params["workers"],
        params["on_bad_sample"],
    )


def crop_table(crops: CropStore) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The hand table the crops were made for, and the hands rejected at crop time (zero-size box,
    unreadable source image)."""
    return crops.table, crops.rejections


def summarise(
    hands: pd.DataFrame,
    read_rejections: pd.DataFrame,
    filter_rejections: pd.DataFrame,
    crop_rejections: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Counts kept per split and dropped per reason and split, and the full list of rejections."""
    rejections = pd.concat([read_rejections, filter_rejections, crop_rejections], ignore_index=True)
    dropped: dict[str, dict[str, int]] = {}
    for (reason, split), count in rejections.groupby(["reason", "split"]).size().items():
        dropped.setdefault(reason, {})[split] = int(count)
    kept = {split: int(count) for split, count in hands["split"].value_counts().sort_index().items()}
    summary = {
        "kept": kept,
        "kept_total": len(hands),
        "dropped": dropped,
        "dropped_total": len(rejections),
        "candidates_total": int(len(hands) + len(rejections)),
        "min_visible": params["min_visible"],
        "on_bad_sample": params["on_bad_sample"],
        "crop": params["crop"],
    }
    logger.info("kept %s; dropped %s", kept, dropped or "nothing")
    return summary, rejections.astype({"sample_id": "int64", "image_id": "int64"})


def plot_crop_grid(hands: pd.DataFrame, crops: CropStore, params: dict[str, Any]) -> Figure:
    """A grid of random crops with their keypoints and skeleton, to see the labels sit on the hands."""
    grid = params["grid"]
    rng = np.random.default_rng(grid["seed"])
    picked = hands.iloc[np.sort(rng.choice(len(hands), size=min(grid["n"], len(hands)), replace=False))]
    images = [np.asarray(Image.open(Path(crops) / path).convert("RGB")) for path in picked["crop_path"]]
    titles = [
        f"{r.split} {r.image_id} {r.side}{' (mirrored)' if r.mirrored else ''}" for r in picked.itertuples()
    ]
    return keypoint_grid(
        images,
        stack_column(picked["keypoints_crop"]),
        stack_column(picked["visible"]).astype(bool),
        titles,
        ncols=grid["ncols"],
    )
