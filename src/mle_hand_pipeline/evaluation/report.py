"""One evaluation report from model predictions and the hand table: metrics, tables and figures.

Shared by the train and evaluate pipelines (plain python: no Kedro, no MLflow, no torch).

Normalisation: every normalised error (NME, PCK, AUC) divides by ``max(w, h)`` of the tight box of
the crop's VISIBLE ground-truth keypoints, measured in crop pixels (the hand table's ``hand_size``;
see :mod:`.metrics`). EPE and MMPose's AUC use source-image pixels (predictions mapped back through
each crop's box and mirror flag).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from mle_hand_pipeline.datasets.crops import CropBox, crop_to_source
from mle_hand_pipeline.datasets.records import stack_column
from mle_hand_pipeline.evaluation import metrics as M
from mle_hand_pipeline.evaluation import plots as P
from mle_hand_pipeline.keypoints import PAPER_KEYPOINTS

PREDICTION_ID_COLUMNS = ["split", "sample_id", "image_id", "side", "crop_path", "crop_size", "mirrored"]
CALIBRATION_COLUMNS = ["sigma_mean", "rms_error", "mean_abs_error", "count"]
FINAL_STAGE_ONLY = "final"  # the per-stage table's `stage` when only the last stage is known


@dataclass
class EvaluationReport:
    """Everything an evaluation produces except the figures (see :func:`evaluation_figures`).

    metrics: flat MLflow-safe dict (see :func:`evaluate_predictions`).
    per_keypoint: one row per keypoint: ``keypoint``, ``name``, ``nme``, ``pck_0.2``, ``n_visible``,
        ``paper_view`` (one of the paper's 11 plotted joints).
    per_stage: one row per stage: ``stage``, ``nme``, ``pck_0.2``, ``auc_0.2``.
    pck_curve: ``threshold``, ``pck`` (final stage, 41 thresholds over [0, 0.2]).
    calibration: quantile bins of sigma (``CALIBRATION_COLUMNS``); empty without sigmas.
    predictions: one row per test crop: identity columns, ``gt_crop`` (K, 2), ``visible`` (K,),
        ``pred_crop`` and ``pred_source`` (T, K, 2), ``sigma_crop`` (T, K, 2) or None, ``nme``.
    """

    metrics: dict[str, float]
    per_keypoint: pd.DataFrame
    per_stage: pd.DataFrame
    pck_curve: pd.DataFrame
    calibration: pd.DataFrame
    predictions: pd.DataFrame


def stack_nested(column: pd.Series) -> np.ndarray:
    """A column of per-row nested arrays (as parquet returns them: object arrays of arrays) -> (N, ...)."""

    def dense(value):
        if isinstance(value, np.ndarray) and value.dtype == object:
            return np.stack([dense(v) for v in value])
        return np.asarray(value)

    return np.stack([dense(v) for v in column])


def to_source(coords: np.ndarray, table: pd.DataFrame) -> np.ndarray:
    """``(N, ..., 2)`` crop pixels -> source pixels through each row's crop box and mirror flag."""
    return np.stack(
        [
            crop_to_source(points, CropBox(row.box_x0, row.box_y0, row.box_side), row.crop_size, row.mirrored)
            for points, row in zip(np.asarray(coords), table.itertuples(index=False), strict=True)
        ]
    )


def evaluate_predictions(
    table: pd.DataFrame,
    coords: np.ndarray,
    sigmas: np.ndarray | None = None,
    all_stages: bool = True,
) -> EvaluationReport:
    """Metrics and tables of predictions on the crops of ``table``.

    Args:
        table: hand table rows (e.g. the test split), in the order of the predictions.
        coords: ``(N, T, K, 2)`` predictions of every stage in crop pixels of the stored crops.
        sigmas: ``(N, T, K, 2)`` predicted scales in crop pixels, or None (no uncertainty).
        all_stages: False when ``coords`` holds only the final stage of a model with unknown T
            (an MLflow model): the per-stage metrics are then left out and the per-stage table has one
            row whose ``stage`` is ``"final"``.

    Returns:
        An :class:`EvaluationReport`. ``metrics`` holds :func:`.metrics.evaluate`'s keys (``nme``,
        ``nme_per_sample``, ``pck_0.05`` .. ``pck_0.2``, ``auc_0.2``, ``epe_px``, ``mmpose_auc``,
        ``stage{t}_nme``/``stage{t}_pck_0.2``, and the uncertainty keys when ``sigmas`` is given) plus
        ``nme_paper11`` (pooled NME over the paper's 11 joints), ``n_crops`` and ``n_keypoints``.
    """
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 4 or len(coords) != len(table):
        raise ValueError(f"coords must be (N={len(table)}, T, K, 2), got {coords.shape}")
    gt = stack_column(table["keypoints_crop"]).astype(np.float64)
    visible = stack_column(table["visible"]).astype(bool)
    hand_size = table["hand_size"].to_numpy(np.float64)
    gt_src = stack_column(table["keypoints_source"]).astype(np.float64)
    pred_src = to_source(coords, table)
    stages = np.moveaxis(coords, 1, 0)  # (T, N, K, 2)
    final_sigmas = None if sigmas is None else np.asarray(sigmas, dtype=np.float64)[:, -1]

    metrics = M.evaluate(
        stages, gt, visible, hand_size, pred_src=pred_src[:, -1], gt_src=gt_src, sigmas=final_sigmas
    )
    if not all_stages:
        metrics = {k: v for k, v in metrics.items() if not k.startswith("stage")}
    errors = M.normalised_errors(coords[:, -1], gt, hand_size)
    paper = list(PAPER_KEYPOINTS)
    metrics["nme_paper11"] = M.nme(errors[:, paper], visible[:, paper])
    metrics["n_crops"] = float(len(table))
    metrics["n_keypoints"] = float(visible.sum())

    per_keypoint, per_stage = M.evaluation_tables(stages, gt, visible, hand_size)
    per_keypoint["paper_view"] = per_keypoint["keypoint"].isin(paper)
    if not all_stages:
        per_stage["stage"] = FINAL_STAGE_ONLY
    thresholds, values = M.pck_curve(errors, visible)
    pck_curve = pd.DataFrame({"threshold": thresholds, "pck": values})
    if final_sigmas is None:
        calibration = pd.DataFrame(columns=CALIBRATION_COLUMNS)
    else:
        curve = M.calibration_curve(coords[:, -1] - gt, final_sigmas, visible)
        calibration = pd.DataFrame({k: curve[k] for k in CALIBRATION_COLUMNS})

    predictions = table[PREDICTION_ID_COLUMNS].reset_index(drop=True).copy()
    # Nested lists, not 2-D arrays: parquet stores lists of lists, not multi-dimensional arrays.
    predictions["gt_crop"] = gt.tolist()
    predictions["visible"] = visible.tolist()
    predictions["pred_crop"] = coords.tolist()
    predictions["pred_source"] = pred_src.tolist()
    predictions["sigma_crop"] = None if sigmas is None else np.asarray(sigmas, dtype=np.float64).tolist()
    predictions["nme"] = M.sample_nme(errors, visible)
    return EvaluationReport(metrics, per_keypoint, per_stage, pck_curve, calibration, predictions)


# --------------------------------------------------------------------------------------------------
# Figures of one evaluation (each from the tables above, so they can be redrawn from saved files)
# --------------------------------------------------------------------------------------------------


def _placeholder(text: str, title: str) -> Figure:
    fig = Figure(figsize=(5.5, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, color="grey")
    ax.set_title(title)
    return fig


def pck_curve_figure(pck_curve: pd.DataFrame, label: str) -> Figure:
    return P.plot_pck_curves({label: (pck_curve["threshold"], pck_curve["pck"])}, title=f"PCK, {label}")


def per_keypoint_figure(per_keypoint: pd.DataFrame, label: str) -> Figure:
    """NME bars of the paper's 11 joints (root, and each finger's base joint and tip)."""
    return P.plot_per_keypoint_nme(
        {label: per_keypoint["nme"].to_numpy(float)}, title=f"NME per keypoint, {label}"
    )


def per_stage_figure(per_stage: pd.DataFrame, label: str) -> Figure:
    if (per_stage["stage"].astype(str) == FINAL_STAGE_ONLY).all():
        return _placeholder(
            f"Per-stage PCK needs a checkpoint:\nan MLflow model outputs only the final stage\n"
            f"(final-stage PCK@0.2 = {per_stage['pck_0.2'].iloc[-1]:.3f})",
            f"PCK per stage, {label}",
        )
    return P.plot_per_stage_pck(
        {label: per_stage["pck_0.2"].to_numpy(float)}, title=f"PCK per stage, {label}"
    )


def calibration_figure(calibration: pd.DataFrame, label: str) -> Figure:
    if calibration.empty:
        return _placeholder(
            f"{label} predicts no uncertainty (no sigmas)", f"Uncertainty calibration, {label}"
        )
    return P.plot_calibration(
        {k: calibration[k].to_numpy(float) for k in CALIBRATION_COLUMNS},
        title=f"Uncertainty calibration, {label}",
    )


def qualitative_figure(predictions: pd.DataFrame, crops_dir: str | Path, label: str, n: int = 4) -> Figure:
    """The ``n`` best, median and worst crops by NME: predicted (finger colours) vs true skeleton."""
    groups = P.select_qualitative(predictions["nme"].to_numpy(float), n)
    picks = [
        (name, rank, int(i)) for name in ("best", "median", "worst") for rank, i in enumerate(groups[name])
    ]
    rows = predictions.iloc[[i for _, _, i in picks]]
    images = []
    for path in rows["crop_path"]:
        with Image.open(Path(crops_dir) / path) as file:
            images.append(np.asarray(file.convert("RGB")))
    pred = stack_nested(rows["pred_crop"])[:, -1]
    fig = P.qualitative_grid(
        images,
        stack_nested(rows["gt_crop"]),
        pred,
        stack_nested(rows["visible"]).astype(bool),
        titles=[f"{name} {rank + 1}: NME {predictions['nme'].iloc[i]:.3f}" for name, rank, i in picks],
        ncols=n,
    )
    fig.suptitle(f"Test crops, {label}: best / median / worst rows")
    return fig


def evaluation_figures(report: EvaluationReport, crops_dir: str | Path, label: str) -> dict[str, Figure]:
    """The five figures of one evaluation, keyed ``pck_curve``, ``per_keypoint_nme``,
    ``per_stage_pck``, ``calibration``, ``qualitative``."""
    return {
        "pck_curve": pck_curve_figure(report.pck_curve, label),
        "per_keypoint_nme": per_keypoint_figure(report.per_keypoint, label),
        "per_stage_pck": per_stage_figure(report.per_stage, label),
        "calibration": calibration_figure(report.calibration, label),
        "qualitative": qualitative_figure(report.predictions, crops_dir, label),
    }
