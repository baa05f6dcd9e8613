"""Figures for the report (matplotlib ``Figure`` objects, no pyplot: thread-safe, never opens a window).

Every ``plot_*`` / ``*_grid`` / ``*_figure(s)`` function returns a :class:`matplotlib.figure.Figure` (or
a dict of them); save it with ``fig.savefig(path, dpi=...)``. :func:`draw_skeleton` returns a new image
array (Pillow drawing). :func:`evaluation_figures` draws one evaluation's five figures from the tables
of :mod:`.report`; :func:`plot_seed_summary` and :func:`plot_metric_vs_noise` a seeded comparison's
summary with its intervals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image, ImageDraw, ImageFont

from mle_hand_pipeline.datasets.records import stack_column
from mle_hand_pipeline.evaluation.metrics import auc
from mle_hand_pipeline.evaluation.report import CALIBRATION_COLUMNS, FINAL_STAGE_ONLY
from mle_hand_pipeline.keypoints import (
    FINGER_COLOURS,
    KEYPOINT_NAMES,
    PAPER_KEYPOINTS,
    SKELETON,
    bone_colour,
)

WRIST_COLOUR: tuple[int, int, int] = (245, 245, 245)
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
# Seed summaries (tables of :func:`mle_hand_pipeline.evaluation.statistics.summarise_seeds`)
# --------------------------------------------------------------------------------------------------


def _interval_errors(group: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Means and the ``(2, n)`` asymmetric error-bar lengths of the intervals (0 where NaN: 1 seed)."""
    mean = group[f"{metric}_mean"].to_numpy(float)
    low = np.nan_to_num(mean - group[f"{metric}_ci_low"].to_numpy(float), nan=0.0)
    high = np.nan_to_num(group[f"{metric}_ci_high"].to_numpy(float) - mean, nan=0.0)
    return mean, np.stack([low, high])


def _check_summary(summary: pd.DataFrame, columns: Sequence[str], caller: str) -> None:
    missing = [c for c in columns if c not in summary.columns]
    if missing:
        raise ValueError(
            f"{caller}: column(s) {missing} not in the summary (columns: {list(summary.columns)})"
        )


def plot_seed_summary(
    summary: pd.DataFrame, metric: str, by: str = "method", *, confidence: float = 0.95
) -> Figure:
    """Mean of ``metric`` per ``by`` value with its confidence interval as error bars.

    With an ``init`` column holding several values (``scratch``, ``pretrained``), each ``by`` value
    gets one point per init, side by side. A group with one seed has no interval: its point has no
    bar, and the legend says ``n = 1``.

    Args:
        summary: :func:`..statistics.summarise_seeds` output with ``by``, ``n_seeds`` and
            ``<metric>_mean``, ``<metric>_ci_low``, ``<metric>_ci_high``.
        metric: the metric's name without suffix.
        by: the column on the x axis.
        confidence: the level the summary's intervals were made with (axis label only).
    """
    _check_summary(
        summary, [by, f"{metric}_mean", f"{metric}_ci_low", f"{metric}_ci_high"], "plot_seed_summary"
    )
    labels = list(dict.fromkeys(summary[by]))
    x = {label: i for i, label in enumerate(labels)}
    inits = list(dict.fromkeys(summary["init"])) if "init" in summary.columns else [None]
    width = 0.6 / max(len(inits), 1)
    fig = Figure(figsize=(max(5.0, 1.1 * len(labels) + 2), 4.2), layout="constrained")
    ax = fig.add_subplot()
    for j, init in enumerate(inits):
        group = summary if init is None else summary[summary["init"] == init]
        offset = (j - (len(inits) - 1) / 2) * width
        mean, err = _interval_errors(group, metric)
        positions = np.array([x[v] for v in group[by]], dtype=float) + offset
        seeds = sorted(set(group["n_seeds"].astype(int))) if "n_seeds" in group.columns else []
        seeds_text = f"n = {'/'.join(str(n) for n in seeds)}" if seeds else ""
        label = ", ".join(t for t in (None if init is None else str(init), seeds_text) if t)
        ax.errorbar(positions, mean, yerr=err, fmt="o", capsize=4, label=label or None)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels([str(v) for v in labels], rotation=20, ha="right")
    ax.set_xlabel(by)
    ax.set_ylabel(f"{metric} (mean, {confidence:.0%} interval)")
    ax.grid(True, axis="y", alpha=0.3)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize="small")
    ax.set_title(f"{metric} over seeds")
    return fig


def plot_metric_vs_noise(summary: pd.DataFrame, metric: str, *, confidence: float = 0.95) -> Figure:
    """``metric`` against the training-label noise level: one panel per ``init`` (when the summary has
    that column), one line per method in the same colour on every panel, interval error bars.

    The x axis lists the ``noise`` values (level names) in the order of ``noise_index`` when the
    summary has it, else in order of first appearance. The methods' points are spread a little
    sideways so that overlapping error bars stay readable.

    Args:
        summary: :func:`..statistics.summarise_seeds` output with ``method``, ``noise`` and
            ``<metric>_mean``, ``<metric>_ci_low``, ``<metric>_ci_high``.
        metric: the metric's name without suffix.
        confidence: the level the summary's intervals were made with (axis label only).
    """
    _check_summary(
        summary,
        ["method", "noise", f"{metric}_mean", f"{metric}_ci_low", f"{metric}_ci_high"],
        "plot_metric_vs_noise",
    )
    ordered = summary.sort_values("noise_index", kind="stable") if "noise_index" in summary else summary
    levels = list(dict.fromkeys(ordered["noise"]))
    methods = list(dict.fromkeys(ordered["method"]))
    inits = list(dict.fromkeys(ordered["init"])) if "init" in ordered.columns else [None]
    fig = Figure(figsize=(4.0 + 3.0 * len(inits), 4.5), layout="constrained")
    axes = fig.subplots(1, len(inits), sharey=True, squeeze=False)[0]
    spread = 0.25 / max(len(methods), 1)
    for ax, init in zip(axes, inits, strict=True):
        panel = ordered if init is None else ordered[ordered["init"] == init]
        for i, method in enumerate(methods):
            group = panel[panel["method"] == method]
            if group.empty:
                continue
            offset = (i - (len(methods) - 1) / 2) * spread
            x = np.array([levels.index(v) for v in group["noise"]], dtype=float)
            order = np.argsort(x)
            mean, err = _interval_errors(group.iloc[order], metric)
            ax.errorbar(x[order] + offset, mean, yerr=err, marker="o", capsize=3, color=f"C{i}", label=method)
        ax.set_xticks(range(len(levels)))
        ax.set_xticklabels([str(v) for v in levels], rotation=20, ha="right")
        ax.set_xlim(-0.5, len(levels) - 0.5)
        ax.set_xlabel("training-label noise level")
        ax.grid(True, alpha=0.3)
        if init is not None:
            ax.set_title(f"init: {init}", fontsize="medium")
    axes[0].set_ylabel(f"{metric} (mean, {confidence:.0%} interval)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 5), fontsize="small")
    fig.suptitle(f"{metric} against label noise")
    return fig


def plot_paired_changes(
    changes: pd.DataFrame,
    metric: str,
    baseline: str,
    *,
    confidence: float = 0.95,
    title: str | None = None,
    empty: str | None = None,
) -> Figure:
    """Each method's change of ``metric`` from the ``baseline`` noise level, paired by seed: one panel
    per ``init``, one row per method and noise level, the paired interval as a horizontal bar with its
    number of pairs, and a line at 0 (a bar that crosses it is no measured change; a point without a
    bar had one pair, so no interval).

    Args:
        changes: :func:`..statistics.paired_changes` output with ``method``, ``noise``, ``init``,
            ``n_seeds`` and ``<metric>_mean``, ``<metric>_ci_low``, ``<metric>_ci_high``.
        metric: the metric's name without suffix.
        baseline: the level the changes are taken from (titles only).
        confidence: the level of the intervals (axis label only).
        title, empty: the figure's title and the text of a figure without rows, for changes taken
            from something else than a noise level (the last stage against stage 1).
    """
    _check_summary(
        changes,
        ["method", "noise", "init", "n_seeds", f"{metric}_mean", f"{metric}_ci_low", f"{metric}_ci_high"],
        "plot_paired_changes",
    )
    title = title or f"{metric}: change from {baseline!r} training labels, paired by seed"
    if changes.empty:
        return _placeholder(empty or f"no change from {baseline!r} to show (no other noise level)", title)
    inits = list(dict.fromkeys(changes["init"]))
    rows = list(dict.fromkeys(zip(changes["method"], changes["noise"], strict=True)))
    methods = list(dict.fromkeys(changes["method"]))
    fig = Figure(figsize=(3.0 + 3.2 * len(inits), 1.2 + 0.35 * len(rows)), layout="constrained")
    axes = fig.subplots(1, len(inits), sharey=True, squeeze=False)[0]
    for ax, init in zip(axes, inits, strict=True):
        panel = changes[changes["init"] == init]
        y = [rows.index(key) for key in zip(panel["method"], panel["noise"], strict=True)]
        mean, err = _interval_errors(panel, metric)
        for yi, mi, lo, hi, method, n in zip(
            y, mean, err[0], err[1], panel["method"], panel["n_seeds"], strict=True
        ):
            ax.errorbar(mi, yi, xerr=[[lo], [hi]], fmt="o", capsize=3, color=f"C{methods.index(method)}")
            ax.annotate(
                f"n={n}",
                (mi + hi, yi),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize="x-small",
            )
        ax.axvline(0.0, color="grey", linewidth=1)
        ax.margins(x=0.15)  # room for the n= labels
        ax.set_title(f"init: {init}", fontsize="medium")
        ax.set_xlabel(f"change of {metric} (mean, {confidence:.0%} paired interval)")
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(rows)))
    axes[0].set_yticklabels([f"{method}, {noise}" for method, noise in rows])
    axes[0].invert_yaxis()
    fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------


def _kp_colour(k: int) -> tuple[int, int, int]:
    return WRIST_COLOUR if k == 0 else bone_colour(k)


def draw_skeleton(
    image: np.ndarray,
    keypoints: np.ndarray,
    visible: np.ndarray | None = None,
    colour_mode: str | tuple[int, int, int] = "fingers",
    radius: float = 3,
    line_width: int = 2,
    show_invisible: bool = False,
    annotate: bool = False,
) -> np.ndarray:
    """Draw a hand skeleton on a copy of ``image`` with Pillow.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (a greyscale ``(H, W)`` image is converted).
        keypoints: ``(K, 2)`` ``(x, y)`` pixel coordinates in ``image``.
        visible: ``(K,)`` bool, or None for all visible. A bone is drawn only when both of its ends
            are visible; an invisible keypoint is skipped, or drawn as a hollow circle when
            ``show_invisible``. Non-finite coordinates are always skipped.
        colour_mode: ``"fingers"`` (each bone and joint in its finger's colour from
            :data:`FINGER_COLOURS`, the wrist near-white) or one fixed RGB colour.
        radius: joint radius in pixels (filled discs with a dark outline; 0 draws bones only).
        line_width: bone width in pixels.
        annotate: write each keypoint's index next to it (checks the keypoint order).

    Returns:
        A new ``(H, W, 3)`` uint8 array.
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    pil = Image.fromarray(np.ascontiguousarray(arr[..., :3]).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(pil)
    kp = np.asarray(keypoints, dtype=float)
    finite = np.isfinite(kp).all(axis=-1)
    vis = finite if visible is None else (np.asarray(visible).astype(bool) & finite)

    def colour(k: int) -> tuple[int, int, int]:
        return _kp_colour(k) if colour_mode == "fingers" else tuple(int(c) for c in colour_mode)

    for parent, child in SKELETON:
        if child < len(kp) and vis[parent] and vis[child]:
            draw.line([tuple(kp[parent]), tuple(kp[child])], fill=colour(child), width=line_width)
    font = ImageFont.load_default() if annotate else None
    for k in range(len(kp)):
        if not finite[k] or (not vis[k] and not show_invisible):
            continue
        x, y = kp[k]
        box = [x - radius, y - radius, x + radius, y + radius]
        if radius > 0:
            if vis[k]:
                draw.ellipse(box, fill=colour(k), outline=(20, 20, 20), width=1)
            else:
                draw.ellipse(box, outline=colour(k), width=max(1, line_width // 2 + 1))
        if annotate:
            draw.text((x + radius + 1, y - radius - 1), str(k), fill=(255, 255, 255), font=font)
    return np.asarray(pil)


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


def _placeholder(text: str, title: str) -> Figure:
    fig = Figure(figsize=(5.5, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, color="grey")
    ax.set_title(title)
    return fig


def per_stage_figure(per_stage: pd.DataFrame, label: str) -> Figure:
    if (per_stage["stage"].astype(str) == FINAL_STAGE_ONLY).all():
        return _placeholder(
            f"Per-stage PCK needs a checkpoint:\nan MLflow model outputs only the final stage\n"
            f"(final-stage PCK@0.2 = {per_stage['pck_0.2'].iloc[-1]:.3f})",
            f"PCK per stage, {label}",
        )
    return plot_per_stage_pck({label: per_stage["pck_0.2"].to_numpy(float)}, title=f"PCK per stage, {label}")


def calibration_figure(calibration: pd.DataFrame, label: str) -> Figure:
    if calibration.empty:
        return _placeholder(
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
