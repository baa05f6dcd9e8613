"""One evaluation report from model predictions and the hand table: metrics and tables (its figures
are :func:`.plots.evaluation_figures`).

Shared by the train and evaluate pipelines (plain python: no Kedro, no MLflow, no torch).

Normalisation: every normalised error (NME, PCK, AUC) divides by ``max(w, h)`` of the tight box of
the crop's VISIBLE ground-truth keypoints, measured in crop pixels (the hand table's ``hand_size``;
see :mod:`.metrics`). EPE and MMPose's AUC use source-image pixels (predictions mapped back through
each crop's box and mirror flag). ``mmpose_pck_0.2`` follows MMPose's convention instead (its
annotation box, see :func:`mmpose_box_size`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mle_hand_pipeline.datasets.crops import CropBox, crop_to_source
from mle_hand_pipeline.datasets.records import stack_column
from mle_hand_pipeline.evaluation import metrics as M
from mle_hand_pipeline.evaluation.statistics import crop_interval
from mle_hand_pipeline.keypoints import PAPER_KEYPOINTS

PREDICTION_ID_COLUMNS = ["split", "sample_id", "image_id", "side", "crop_path", "crop_size", "mirrored"]
CALIBRATION_COLUMNS = ["sigma_mean", "rms_error", "mean_abs_error", "count"]
FINAL_STAGE_ONLY = "final"  # the per-stage table's `stage` when only the last stage is known
# The parts of a report in the order :meth:`EvaluationReport.outputs` returns them (the train and
# evaluate pipelines name their datasets after them: `test_<part>`, `evaluation_<part>`), and the keys
# of :func:`.plots.evaluation_figures`.
EVALUATION_OUTPUTS = (
    "metrics",
    "predictions",
    "per_keypoint",
    "per_stage",
    "pck_curve",
    "calibration",
    "per_crop",
)
# the metrics given with a 95 % bootstrap interval over the test crops (<metric>_ci_low, <metric>_ci_high)
CROP_INTERVAL_METRICS = ("nme", "pck_0.2", "pck_0.05", "auc_0.2")
EVALUATION_FIGURES = ("pck_curve", "per_keypoint_nme", "per_stage_pck", "calibration", "qualitative")
# MMPose's hand annotation boxes: its RHD files carry a box 1.2x the keypoints' extent; its
# FreiHandDataset uses the whole 224 x 224 image as the box.
MMPOSE_RHD_BOX_SCALE = 1.2
MMPOSE_FREIHAND_IMAGE_SIDE = 224.0

logger = logging.getLogger(__name__)


@dataclass
class EvaluationReport:
    """Everything an evaluation produces except the figures (see :func:`.plots.evaluation_figures`).

    metrics: flat MLflow-safe dict (see :func:`evaluate_predictions`).
    per_keypoint: one row per keypoint: ``keypoint``, ``name``, ``nme``, ``pck_0.2``, ``n_visible``,
        ``paper_view`` (one of the paper's 11 plotted joints).
    per_stage: one row per stage: ``stage``, ``nme``, ``pck_0.2``, ``auc_0.2``.
    pck_curve: ``threshold``, ``pck`` (final stage, 41 thresholds over [0, 0.2]).
    calibration: quantile bins of sigma (``CALIBRATION_COLUMNS``); empty without sigmas.
    predictions: one row per test crop: identity columns, ``gt_crop`` (K, 2), ``visible`` (K,),
        ``pred_crop`` and ``pred_source`` (T, K, 2), ``sigma_crop`` (T, K, 2) or None, ``nme``.
    per_crop: one row per test crop: identity columns and the crop's part of each pooled metric
        (:func:`.metrics.per_crop_sums`), from which a comparison resamples the test crops.
    """

    metrics: dict[str, float]
    per_keypoint: pd.DataFrame
    per_stage: pd.DataFrame
    pck_curve: pd.DataFrame
    calibration: pd.DataFrame
    predictions: pd.DataFrame
    per_crop: pd.DataFrame

    def outputs(self) -> tuple:
        """The parts in :data:`EVALUATION_OUTPUTS` order (metrics first)."""
        return tuple(getattr(self, name) for name in EVALUATION_OUTPUTS)

    def summary(self) -> str:
        """One log line: NME, PCK@0.2, AUC, EPE and the number of crops."""
        m = self.metrics
        return (
            f"NME {m['nme']:.4f}  PCK@0.2 {m['pck_0.2']:.4f}  AUC {m['auc_0.2']:.4f}  "
            f"EPE {m['epe_px']:.2f} px  ({int(m['n_crops'])} crops)"
        )


def to_source(coords: np.ndarray, table: pd.DataFrame) -> np.ndarray:
    """``(N, ..., 2)`` crop pixels -> source pixels through each row's crop box and mirror flag."""
    return np.stack(
        [
            crop_to_source(points, CropBox(row.box_x0, row.box_y0, row.box_side), row.crop_size, row.mirrored)
            for points, row in zip(np.asarray(coords), table.itertuples(index=False), strict=True)
        ]
    )


def mmpose_box_size(table: pd.DataFrame, gt_src: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """MMPose's PCK normaliser per crop, in SOURCE pixels: ``max(w, h)`` of its annotation box.

    - FreiHAND (``dataset == "freihand"``): the whole 224 x 224 image (MMPose's ``FreiHandDataset``
      sets ``bbox = [0, 0, 224, 224]``), so the normaliser is 224 px for every crop.
    - RHD and anything else: :data:`MMPOSE_RHD_BOX_SCALE` (1.2) x the tight box of the visible
      keypoints. MMPose's RHD files hold a box 1.2x the keypoints' extent; we measure the extent on
      the visible keypoints (the only ones our tables keep), which can be smaller than a box over all
      21 annotated points when some are occluded.

    Args:
        table: hand table rows (the ``dataset`` column decides; absent means RHD's convention).
        gt_src: ``(N, K, 2)`` ground truth in source pixels.
        visible: ``(N, K)``.

    Returns:
        ``(N,)`` float.
    """
    keypoint_box = MMPOSE_RHD_BOX_SCALE * M.hand_box_size(gt_src, visible)
    if "dataset" not in table.columns:
        return keypoint_box
    is_freihand = table["dataset"].to_numpy() == "freihand"
    return np.where(is_freihand, MMPOSE_FREIHAND_IMAGE_SIDE, keypoint_box)


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
        ``nme_per_sample``, ``pck_0.05`` .. ``pck_0.2``, ``auc_0.2``, ``n_zero_box``, ``epe_px``,
        ``mmpose_auc``, ``mmpose_pck_0.2`` (MMPose's convention, :func:`mmpose_box_size`),
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

    zero_box = M.zero_box_crops(visible, hand_size)
    if len(zero_box):
        rows = table.iloc[zero_box]
        logger.warning(
            "%d test crop(s) have a zero-size hand box (hand_size <= 0: all visible keypoints at one "
            "point) and are left out of NME/PCK/AUC (counted in n_zero_box): %s",
            len(zero_box),
            ", ".join(str(c) for c in rows["crop_path"].head(10)),
        )
    metrics = M.evaluate(
        stages,
        gt,
        visible,
        hand_size,
        pred_src=pred_src[:, -1],
        gt_src=gt_src,
        sigmas=final_sigmas,
        mmpose_box_px=mmpose_box_size(table, gt_src, visible),
    )
    if not all_stages:
        metrics = {k: v for k, v in metrics.items() if not k.startswith("stage")}
    errors = M.normalised_errors(coords[:, -1], gt, hand_size)
    normalised_visible = M.normalisable(visible, hand_size)
    paper = list(PAPER_KEYPOINTS)
    metrics["nme_paper11"] = M.nme(errors[:, paper], normalised_visible[:, paper])
    metrics["n_crops"] = float(len(table))
    metrics["n_keypoints"] = float(visible.sum())

    per_keypoint, per_stage = M.evaluation_tables(stages, gt, visible, hand_size)
    per_keypoint["paper_view"] = per_keypoint["keypoint"].isin(paper)
    if not all_stages:
        per_stage["stage"] = FINAL_STAGE_ONLY
    thresholds, values = M.pck_curve(errors, normalised_visible)
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
    predictions["nme"] = M.sample_nme(errors, normalised_visible)
    pixel_errors = np.linalg.norm(pred_src[:, -1] - gt_src, axis=-1)
    sums = M.per_crop_sums(errors, visible, hand_size, pixel_errors)
    per_crop = pd.concat([table[PREDICTION_ID_COLUMNS].reset_index(drop=True), sums], axis=1)
    for name in CROP_INTERVAL_METRICS:  # how much another draw of test crops could move the figure
        numerator, count = M.POOLED_PARTS[name]
        low, high = crop_interval(sums[numerator].to_numpy(), sums[count].to_numpy())
        metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = low, high
    return EvaluationReport(metrics, per_keypoint, per_stage, pck_curve, calibration, predictions, per_crop)
