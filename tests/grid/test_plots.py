"""A comparison's figures build, with their intervals, and save to PNG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from mle_hand_pipeline.evaluation.statistics import summarise_seeds
from mle_hand_pipeline.grid import plots as P


def _save(fig, tmp_path, name):
    assert isinstance(fig, Figure)
    path = tmp_path / f"{name}.png"
    fig.savefig(path, dpi=60)
    assert path.stat().st_size > 1000


def _seed_summary():

    rng = np.random.default_rng(0)
    rows = []
    for init in ("scratch", "pretrained"):
        for noise_index, noise in enumerate(("clean", "outliers30")):
            for method in ("mle", "integral"):
                for seed in range(3 if method == "mle" else 1):  # integral: one seed, no interval
                    rows.append((method, noise, noise_index, init, seed, rng.uniform(0.3, 0.6)))
    runs = pd.DataFrame(rows, columns=["method", "noise", "noise_index", "init", "seed", "pck"])
    return summarise_seeds(runs, ["method", "noise", "noise_index", "init"], ["pck"])


def test_plot_seed_summary_error_bars_per_init(tmp_path):
    summary = _seed_summary()
    clean = summary[summary["noise"] == "clean"]
    fig = P.plot_seed_summary(clean, "pck")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["mle", "integral"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["scratch, n = 1/3", "pretrained, n = 1/3"]
    # one error-bar container per init; mle's bar spans exactly its interval
    containers = ax.containers
    assert len(containers) == 2
    segments = containers[0].lines[2][0].get_segments()
    mle = clean[(clean["method"] == "mle") & (clean["init"] == "scratch")].iloc[0]
    np.testing.assert_allclose(sorted(segments[0][:, 1]), [mle["pck_ci_low"], mle["pck_ci_high"]])
    assert segments[1][0, 1] == segments[1][1, 1]  # integral, one seed: a zero-length bar
    _save(fig, tmp_path, "seed_summary")


def test_plot_metric_vs_noise_one_panel_per_init_one_line_per_method(tmp_path):
    summary = _seed_summary()
    fig = P.plot_metric_vs_noise(summary, "pck")
    scratch, pretrained = fig.axes
    assert (scratch.get_title(), pretrained.get_title()) == ("init: scratch", "init: pretrained")
    assert [t.get_text() for t in scratch.get_xticklabels()] == ["clean", "outliers30"]
    assert len(scratch.containers) == len(pretrained.containers) == 2  # mle, integral
    # a method keeps its colour across panels
    assert [c.lines[0].get_color() for c in scratch.containers] == [
        c.lines[0].get_color() for c in pretrained.containers
    ]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["mle", "integral"]
    assert "95% interval" in scratch.get_ylabel()
    _save(fig, tmp_path, "metric_vs_noise")
    with pytest.raises(ValueError, match="'noise'"):
        P.plot_metric_vs_noise(summary.drop(columns="noise"), "pck")


def test_plot_paired_changes_one_bar_per_method_and_level_with_a_zero_line(tmp_path):
    changes = pd.DataFrame(
        {
            "method": ["mle", "integral", "mle", "integral"],
            "init": ["scratch", "scratch", "pretrained", "pretrained"],
            "noise": ["outliers30"] * 4,
            "n_seeds": [3, 3, 5, 1],
            "pck_mean": [-0.03, -0.01, -0.02, 0.01],
            "pck_ci_low": [-0.05, -0.03, -0.03, -0.01],
            "pck_ci_high": [-0.01, 0.01, -0.01, 0.03],
        }
    )
    changes.loc[3, ["pck_ci_low", "pck_ci_high"]] = np.nan  # one pair: no interval
    fig = P.plot_paired_changes(changes, "pck", "clean")
    scratch, pretrained = fig.axes
    assert fig.get_suptitle() == "pck: change from 'clean' training labels, paired by seed"
    assert [t.get_text() for t in scratch.get_yticklabels()] == ["mle, outliers30", "integral, outliers30"]
    assert len(pretrained.containers) == 2 and pretrained.get_title() == "init: pretrained"
    # mle's bar on the scratch panel spans exactly its paired interval
    segment = scratch.containers[0].lines[2][0].get_segments()[0]
    np.testing.assert_allclose(sorted(segment[:, 0]), [-0.05, -0.01])
    assert any(line.get_xdata()[0] == 0.0 for line in scratch.get_lines())  # the zero line
    assert [t.get_text() for t in pretrained.texts] == ["n=5", "n=1"]  # the one-pair point says so
    _save(fig, tmp_path, "paired_changes")
    with pytest.raises(ValueError, match="'init'"):
        P.plot_paired_changes(changes.drop(columns="init"), "pck", "clean")
