"""The figures of one training and evaluation run (matplotlib ``Figure`` objects, no pyplot:
thread-safe, never opens a window): curves, per-keypoint and per-stage metrics, calibration, and
qualitative grids of crops. Every ``plot_*`` / ``*_grid`` / ``*_figure(s)`` function returns a
:class:`matplotlib.figure.Figure` (or a dict of them); save it with ``fig.savefig(path, dpi=...)``.
:func:`evaluation_figures` draws one evaluation's five figures from the tables of :mod:`.report`.
A comparison's figures are :mod:`mle_hand_pipeline.grid.plots`; the skeleton drawn on images is
:mod:`.drawing`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from mle_hand_pipeline.datasets.records import stack_column
from mle_hand_pipeline.evaluation.drawing import WRIST_COLOUR, draw_skeleton
from mle_hand_pipeline.evaluation.metrics import auc
from mle_hand_pipeline.evaluation.report import CALIBRATION_COLUMNS, FINAL_STAGE_ONLY
from mle_hand_pipeline.keypoints import (
    FINGER_COLOURS,
    KEYPOINT_NAMES,
    PAPER_KEYPOINTS,
)

# Cyan: distinct from every finger colour (the middle finger is green) and from skin tones.
GT_COLOUR: tuple[int, int, int] = (0, 255, 255)

# Short axis labels for the paper's 11-joint view (R: root, T: tip, as in its figures 5-7).
_SHORT_NAMES = {
    "wrist": "R",
    "thumb_cmc": "thumb CMC",
    "thumb_tip": "thumb T",
    "index_mcp": "index MCP",
    "index_tip": "index T",
    "middle_mcp": "middle MCP",
    "middle_tip": "middle T",
    "ring_mcp": "ring MCP",
    "ring_tip": "ring T",
    "pinky_mcp": "pinky MCP",
    "pinky_tip": "pinky T",
}


def _rgb(c: Sequence[int]) -> tuple[float, float, float]:
    return (c[0] / 255.0, c[1] / 255.0, c[2] / 255.0)


# --------------------------------------------------------------------------------------------------
# Metric plots
# --------------------------------------------------------------------------------------------------


def plot_pck_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    title: str | None = "PCK",
    xlabel: str = "normalised distance threshold (max(w, h) of the GT box)",
) -> Figure:
    """Several PCK curves on one axes (one line per entry), legend ``label (AUC x.xxx)``.

    Args:
        curves: ``{label: (thresholds (S,), pck (S,))}``, e.g. from :func:`metrics.pck_curve`.
    """
    fig = Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for label, (thr, values) in curves.items():
        thr = np.asarray(thr, dtype=float)
        values = np.asarray(values, dtype=float)
        ax.plot(thr, values, marker="o", markersize=3, label=f"{label} (AUC {auc(thr, values):.3f})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("PCK")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)
    return fig


def _per_keypoint_series(
    table: pd.DataFrame | Mapping[str, np.ndarray | pd.DataFrame],
) -> dict[str, np.ndarray]:
    if isinstance(table, pd.DataFrame):
        if "nme" in table.columns:
            return {"nme": table["nme"].to_numpy(dtype=float)}
        return {str(c): table[c].to_numpy(dtype=float) for c in table.columns}
    out = {}
    for label, v in table.items():
        if isinstance(v, pd.DataFrame):
            v = v["nme"]
        out[str(label)] = np.asarray(v, dtype=float)
    return out


def plot_per_keypoint_nme(
    table: pd.DataFrame | Mapping[str, np.ndarray | pd.DataFrame],
    keypoints: Sequence[int] = PAPER_KEYPOINTS,
    title: str | None = "NME per keypoint",
) -> Figure:
    """Grouped bars: one group per keypoint in ``keypoints``, one bar per method (paper fig. 5a).

    Args:
        table: ``{label: (K,) per-keypoint NME}`` (values may also be the per-keypoint DataFrame of
            :func:`metrics.evaluation_tables`); or a DataFrame whose rows are the K keypoints and
            whose columns are methods; or a single per-keypoint table (with an ``nme`` column).
        keypoints: indices (common order) to show; default the paper's 11 joints.

    The legend shows, in parentheses, each method's mean of its per-keypoint NME over all K
    keypoints (ignoring never-visible ones).
    """
    series = _per_keypoint_series(table)
    kps = list(keypoints)
    n = max(len(series), 1)
    width = 0.8 / n
    x = np.arange(len(kps))
    fig = Figure(figsize=(max(7.0, 0.7 * len(kps) * max(1, n / 2)), 4.5), layout="constrained")
    ax = fig.add_subplot()
    for i, (label, values) in enumerate(series.items()):
        overall = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        ax.bar(x + (i - (n - 1) / 2) * width, values[kps], width, label=f"{label} ({overall:.4f})")
    ax.set_xticks(x)
    ax.set_xticklabels(
        [_SHORT_NAMES.get(KEYPOINT_NAMES[k], KEYPOINT_NAMES[k]) for k in kps], rotation=45, ha="right"
    )
    ax.set_ylabel("NME")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(title="method (mean NME)", fontsize="small")
    if title:
        ax.set_title(title)
    return fig


def plot_per_stage_pck(
    per_stage: Mapping[str, np.ndarray], ylabel: str = "PCK@0.2", title: str | None = "PCK per stage"
) -> Figure:
    """One line per method over stages 1..T (paper fig. 4).

    Args:
        per_stage: ``{label: (T,) values}`` e.g. from :func:`metrics.per_stage_pck`.
    """
    fig = Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.add_subplot()
    max_t = 1
    for label, values in per_stage.items():
        v = np.asarray(values, dtype=float)
        stages = np.arange(1, v.size + 1)
        max_t = max(max_t, v.size)
        ax.plot(stages, v, marker="o", label=label)
        for s, y in zip(stages, v, strict=True):
            ax.annotate(
                f"{y:.3f}", (s, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7
            )
    ax.set_xticks(np.arange(1, max_t + 1))
    ax.set_xlabel("stage")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return fig


def plot_calibration(
    curve: Mapping[str, np.ndarray], title: str | None = "Uncertainty calibration"
) -> Figure:
    """Observed error vs predicted sigma per quantile bin (from :func:`metrics.calibration_curve`).

    Draws 4 lines: observed RMS |error| and mean |error| per bin, and two ideal references for a
    sigma that is the predicted RMS error: ``y = x`` (RMS = sigma, any error shape) and
    ``y = sqrt(2/pi) x`` (mean|e| of a Gaussian). RMS above ``y = x``: over-confident; below: under-.
    """
    s = np.asarray(curve["sigma_mean"], dtype=float)
    fig = Figure(figsize=(5.5, 5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(s, curve["rms_error"], marker="o", label="observed RMS |error|")
    ax.plot(s, curve["mean_abs_error"], marker="s", label="observed mean |error|")
    top = float(
        np.nanmax(np.concatenate([s, np.asarray(curve["rms_error"]), np.asarray(curve["mean_abs_error"])]))
        if s.size
        else 1.0
    )
    ref = np.array([0.0, top * 1.05])
    ax.plot(ref, ref, "k--", lw=1, label="y = x: calibrated, RMS = σ")
    ax.plot(ref, np.sqrt(2 / np.pi) * ref, "k:", lw=1, label="y = 0.80x: Gaussian mean|e| = √(2/π)σ")
    ax.set_xlim(0, ref[1])
    ax.set_ylim(0, ref[1])
    ax.set_aspect("equal")
    ax.set_xlabel("predicted σ per coordinate (bin mean, px)")
    ax.set_ylabel("observed |error| per coordinate (px)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    if title:
        ax.set_title(title)
    return fig


def plot_training_curves(history: pd.DataFrame, title: str | None = None) -> Figure:
    """A 2x2 panel: losses, validation NME, validation PCK@0.2, learning rate, against ``epoch``.

    Args:
        history: DataFrame with column ``epoch`` and any of ``train_loss``, ``val_loss``,
            ``loss_stage1`` .. ``loss_stageT`` (drawn thin on the loss panel), ``val_nme``,
            ``val_pck_0.2``, ``lr`` (log scale). A missing column leaves its panel marked "n/a".
    """
    fig = Figure(figsize=(10, 7), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)
    ep = history["epoch"].to_numpy()

    ax = axes[0, 0]
    drew = False
    for col in ("train_loss", "val_loss"):
        if col in history:
            ax.plot(ep, history[col], lw=2, label=col)
            drew = True
    stage_cols = sorted(
        (c for c in history.columns if str(c).startswith("loss_stage")), key=lambda c: int(c[10:] or 0)
    )
    for col in stage_cols:
        ax.plot(ep, history[col], lw=0.8, alpha=0.8, ls="--", label=col)
        drew = True
    ax.set_title("loss")
    if drew:
        ax.legend(fontsize="small")

    panels = (
        (axes[0, 1], "val_nme", "validation NME", False),
        (axes[1, 0], "val_pck_0.2", "validation PCK@0.2", False),
        (axes[1, 1], "lr", "learning rate", True),
    )
    for ax, col, name, log in panels:
        ax.set_title(name)
        if col in history:
            ax.plot(ep, history[col], marker="o", markersize=2)
            if log and (history[col] > 0).all():
                ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes, color="grey")
    if not drew:
        axes[0, 0].text(0.5, 0.5, "n/a", ha="center", va="center", transform=axes[0, 0].transAxes)
    for ax in axes.ravel():
        ax.grid(True, alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    if title:
        fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------


def _grid(n: int, ncols: int | None, panel_in: float = 2.6) -> tuple[Figure, np.ndarray]:
    ncols = max(1, min(n, ncols or min(n, 4)))
    nrows = max(1, -(-n // ncols))
    fig = Figure(figsize=(panel_in * ncols, panel_in * nrows + 0.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes:
        ax.set_axis_off()
    return fig, axes


def _scale(image: np.ndarray) -> int:
    return max(1, round(min(image.shape[:2]) / 128))


def qualitative_grid(
    images: Sequence[np.ndarray],
    gt: np.ndarray,
    pred: np.ndarray | None = None,
    visible: np.ndarray | None = None,
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
) -> Figure:
    """Ground truth (thin cyan skeleton, drawn on top) and prediction (finger colours) on each image.

    Args:
        images: N ``(H, W, 3)`` uint8 images (e.g. the 256x256 crops).
        gt: ``(N, K, 2)`` in each image's pixels.
        pred: ``(N, K, 2)`` or None (ground truth only).
        visible: ``(N, K)`` or None; applies to the ground truth (predictions are all drawn).
        titles: N panel titles, e.g. ``"worst 1: NME 0.083"``.
        ncols: panels per row (default up to 4).
    """
    n = len(images)
    fig, axes = _grid(n, ncols)
    for i in range(n):
        img = np.asarray(images[i])
        s = _scale(img)
        vis_i = None if visible is None else np.asarray(visible)[i]
        out = img
        if pred is not None:  # thick prediction first, the thin ground truth stays visible on top
            out = draw_skeleton(out, pred[i], None, colour_mode="fingers", radius=1.5 * s, line_width=2 * s)
        out = draw_skeleton(out, gt[i], vis_i, colour_mode=GT_COLOUR, radius=s, line_width=s)
        axes[i].imshow(out)
        if titles is not None:
            axes[i].set_title(titles[i], fontsize=9)
    handles = [Line2D([], [], color=_rgb(GT_COLOUR), lw=1, label="ground truth")]
    if pred is not None:
        handles += [
            Line2D([], [], color=_rgb(c), lw=2.5, label=f"pred. {name}") for name, c in FINGER_COLOURS.items()
        ]
    fig.legend(
        handles=handles, loc="outside lower center", ncol=len(handles), fontsize="small", frameon=False
    )
    return fig


def keypoint_grid(
    images: Sequence[np.ndarray],
    keypoints: np.ndarray,
    visible: np.ndarray | None = None,
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    annotate: bool = False,
) -> Figure:
    """Labels drawn on crops, for the preprocessing visual check (finger colours, hollow = invisible).

    Args:
        images: N ``(H, W, 3)`` uint8 images.
        keypoints: ``(N, K, 2)`` in each image's pixels.
        visible: ``(N, K)`` or None.
        titles: N panel titles.
        ncols: panels per row.
        annotate: write keypoint indices next to the joints.
    """
    n = len(images)
    fig, axes = _grid(n, ncols)
    for i in range(n):
        img = np.asarray(images[i])
        s = _scale(img)
        vis_i = None if visible is None else np.asarray(visible)[i]
        out = draw_skeleton(
            img, keypoints[i], vis_i, radius=1.5 * s, line_width=s, show_invisible=True, annotate=annotate
        )
        axes[i].imshow(out)
        if titles is not None:
            axes[i].set_title(titles[i], fontsize=9)
    handles = [Line2D([], [], color=_rgb(WRIST_COLOUR), marker="o", ls="", mec="k", label="wrist")]
    handles += [Line2D([], [], color=_rgb(c), lw=2.5, label=name) for name, c in FINGER_COLOURS.items()]
    fig.legend(
        handles=handles, loc="outside lower center", ncol=len(handles), fontsize="small", frameon=False
    )
    return fig


def select_qualitative(errors_per_sample: np.ndarray, n: int = 4) -> dict[str, np.ndarray]:
    """Indices of the ``n`` best, ``n`` median and ``n`` worst samples by a per-sample error.

    NaN errors (no labelled keypoint) are ignored. ``best`` is ascending, ``worst`` descending
    (worst first), ``median`` the ``n`` samples closest in rank to the median, ascending. Groups may
    overlap when fewer than ``3 n`` samples exist.

    Args:
        errors_per_sample: ``(N,)``, e.g. :func:`metrics.sample_nme`.

    Returns:
        ``{"best": (<=n,), "median": (<=n,), "worst": (<=n,)}`` int arrays.
    """
    e = np.asarray(errors_per_sample, dtype=float)
    valid = np.flatnonzero(np.isfinite(e))
    order = valid[np.argsort(e[valid], kind="stable")]
    m = order.size
    k = min(n, m)
    start = (m - k) // 2
    return {
        "best": order[:k],
        "median": order[start : start + k],
        "worst": order[::-1][:k],
    }


__all__ = [
    "GT_COLOUR",
    "draw_skeleton",
    "keypoint_grid",
    "plot_calibration",
    "plot_pck_curves",
    "plot_per_keypoint_nme",
    "plot_per_stage_pck",
    "plot_training_curves",
    "qualitative_grid",
    "select_qualitative",
]


# --------------------------------------------------------------------------------------------------
# Figures of one evaluation (each from the tables above, so they can be redrawn from saved files)
# --------------------------------------------------------------------------------------------------


def placeholder_figure(text: str, title: str) -> Figure:
    """A figure that says in grey why there is nothing to draw (``text``) under ``title``."""
    fig = Figure(figsize=(5.5, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, color="grey")
    ax.set_title(title)
    return fig


def per_stage_figure(per_stage: pd.DataFrame, label: str) -> Figure:
    if (per_stage["stage"].astype(str) == FINAL_STAGE_ONLY).all():
        return placeholder_figure(
            f"Per-stage PCK needs a checkpoint:\nan MLflow model outputs only the final stage\n"
            f"(final-stage PCK@0.2 = {per_stage['pck_0.2'].iloc[-1]:.3f})",
            f"PCK per stage, {label}",
        )
    return plot_per_stage_pck({label: per_stage["pck_0.2"].to_numpy(float)}, title=f"PCK per stage, {label}")


def calibration_figure(calibration: pd.DataFrame, label: str) -> Figure:
    if calibration.empty:
        return placeholder_figure(
            f"{label} predicts no uncertainty (no sigmas)", f"Uncertainty calibration, {label}"
        )
    return plot_calibration(
        {k: calibration[k].to_numpy(float) for k in CALIBRATION_COLUMNS},
        title=f"Uncertainty calibration, {label}",
    )


def qualitative_figure(predictions: pd.DataFrame, crops_dir: str | Path, label: str, n: int = 4) -> Figure:
    """The ``n`` best, median and worst crops by NME: predicted (finger colours) vs true skeleton."""
    groups = select_qualitative(predictions["nme"].to_numpy(float), n)
    picks = [
        (name, rank, int(i)) for name in ("best", "median", "worst") for rank, i in enumerate(groups[name])
    ]
    rows = predictions.iloc[[i for _, _, i in picks]]
    images = []
    for path in rows["crop_path"]:
        with Image.open(Path(crops_dir) / path) as file:
            images.append(np.asarray(file.convert("RGB")))
    pred = stack_column(rows["pred_crop"])[:, -1]
    fig = qualitative_grid(
        images,
        stack_column(rows["gt_crop"]),
        pred,
        stack_column(rows["visible"]).astype(bool),
        titles=[f"{name} {rank + 1}: NME {predictions['nme'].iloc[i]:.3f}" for name, rank, i in picks],
        ncols=n,
    )
    fig.suptitle(f"Test crops, {label}: best / median / worst rows")
    return fig


def evaluation_figures(
    predictions: pd.DataFrame,
    per_keypoint: pd.DataFrame,
    per_stage: pd.DataFrame,
    pck_curve: pd.DataFrame,
    calibration: pd.DataFrame,
    crops_dir: str | Path,
    label: str | None = None,
) -> dict[str, Figure]:
    """The five figures of one evaluation from its tables (an :class:`EvaluationReport`'s parts, or the
    saved files), keyed as :data:`EVALUATION_FIGURES`: ``pck_curve``, ``per_keypoint_nme``,
    ``per_stage_pck``, ``calibration``, ``qualitative``. ``label`` defaults to the predictions'
    ``method``."""
    label = str(predictions["method"].iloc[0]) if label is None else label
    return {
        "pck_curve": plot_pck_curves(
            {label: (pck_curve["threshold"], pck_curve["pck"])}, title=f"PCK, {label}"
        ),
        # NME bars of the paper's 11 joints (root, and each finger's base joint and tip)
        "per_keypoint_nme": plot_per_keypoint_nme(
            {label: per_keypoint["nme"].to_numpy(float)}, title=f"NME per keypoint, {label}"
        ),
        "per_stage_pck": per_stage_figure(per_stage, label),
        "calibration": calibration_figure(calibration, label),
        "qualitative": qualitative_figure(predictions, crops_dir, label),
    }
