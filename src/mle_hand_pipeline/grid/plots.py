"""The figures of a seeded comparison's report (tables of
:func:`mle_hand_pipeline.evaluation.statistics.summarise_seeds` and the paired changes of
:mod:`.report`), with their intervals. Matplotlib ``Figure`` objects, no pyplot."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mle_hand_pipeline.evaluation.plots import placeholder_figure


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
        text = empty or f"no change from {baseline!r} to show (no other noise level)"
        return placeholder_figure(text, title)
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
