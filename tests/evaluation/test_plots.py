"""Each figure builds, has the expected artists and saves to PNG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import open_hand
from matplotlib.figure import Figure

from mle_hand_pipeline.evaluation import metrics as M
from mle_hand_pipeline.evaluation import plots as P
from mle_hand_pipeline.keypoints import NUM_KEYPOINTS, PAPER_KEYPOINTS


def _save(fig, tmp_path, name):
    assert isinstance(fig, Figure)
    path = tmp_path / f"{name}.png"
    fig.savefig(path, dpi=60)
    assert path.stat().st_size > 1000


def test_plot_pck_curves(tmp_path):
    e = np.random.default_rng(0).uniform(0, 0.3, (5, 21))
    vis = np.ones_like(e, bool)
    curves = {"a": M.pck_curve(e, vis), "b": M.pck_curve(e / 2, vis), "c": M.pck_curve(e * 2, vis)}
    fig = P.plot_pck_curves(curves)
    ax = fig.axes[0]
    assert len(ax.lines) == 3
    assert "AUC" in ax.get_legend().get_texts()[0].get_text()
    _save(fig, tmp_path, "pck")


def test_plot_per_keypoint_nme(tmp_path):
    rng = np.random.default_rng(0)
    table = {"mle": rng.uniform(0, 0.05, 21), "l2": rng.uniform(0, 0.05, 21)}
    fig = P.plot_per_keypoint_nme(table)
    ax = fig.axes[0]
    assert len(ax.patches) == 2 * len(PAPER_KEYPOINTS)
    assert ax.get_xticklabels()[0].get_text() == "R"
    _save(fig, tmp_path, "per_kp")
    # a single per-keypoint table from evaluation_tables, all 21 joints
    df = pd.DataFrame({"name": list(range(21)), "nme": table["mle"]})
    fig = P.plot_per_keypoint_nme(df, keypoints=range(21))
    assert len(fig.axes[0].patches) == 21


def test_plot_per_stage_pck(tmp_path):
    fig = P.plot_per_stage_pck(
        {"mle": np.array([0.9, 0.95, 0.96, 0.97, 0.97]), "l2": np.linspace(0.8, 0.9, 5)}
    )
    assert len(fig.axes[0].lines) == 2
    _save(fig, tmp_path, "stages")


def test_plot_calibration(tmp_path):
    rng = np.random.default_rng(0)
    sig = rng.uniform(0.5, 4, (50, 21, 2))
    err = rng.normal(0, sig)
    curve = M.calibration_curve(err, sig, np.ones((50, 21), bool), n_bins=8)
    fig = P.plot_calibration(curve)
    assert len(fig.axes[0].lines) == 4  # observed RMS, observed mean|e|, two references
    assert len(fig.axes[0].lines[0].get_xdata()) == 8
    _save(fig, tmp_path, "calibration")


@pytest.mark.parametrize("with_stages", [True, False])
def test_plot_training_curves(tmp_path, with_stages):
    ep = np.arange(1, 11)
    h = pd.DataFrame(
        {"epoch": ep, "train_loss": 5 / ep, "val_nme": 0.1 / ep, "val_pck_0.2": 1 - 0.5 / ep, "lr": 1e-3}
    )
    if with_stages:
        for t in range(1, 4):
            h[f"loss_stage{t}"] = 2 / ep / t
    fig = P.plot_training_curves(h)
    assert len(fig.axes) == 4
    assert len(fig.axes[0].lines) == 1 + (3 if with_stages else 0)
    assert all(len(ax.lines) == 1 for ax in fig.axes[1:])
    _save(fig, tmp_path, f"training_{with_stages}")


def test_plot_training_curves_missing_columns(tmp_path):
    fig = P.plot_training_curves(pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5]}))
    assert len(fig.axes[1].lines) == 0
    _save(fig, tmp_path, "training_min")


def test_qualitative_and_keypoint_grids(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 80, (64, 64, 3), dtype=np.uint8) for _ in range(5)]
    gt = np.stack([open_hand() for _ in range(5)])
    pred = gt + rng.normal(0, 1.5, gt.shape)
    vis = np.ones((5, NUM_KEYPOINTS), bool)
    fig = P.qualitative_grid(images, gt, pred, vis, titles=[f"s{i}" for i in range(5)], ncols=3)
    assert len(fig.axes) == 6 and len(fig.axes[0].images) == 1
    assert fig.axes[4].get_title() == "s4"
    _save(fig, tmp_path, "qual")
    fig = P.qualitative_grid(images[:2], gt[:2], None, None)
    assert len(fig.axes) == 2
    fig = P.keypoint_grid(images, gt, vis, titles=list("abcde"), ncols=4, annotate=True)
    assert len(fig.axes) == 8
    _save(fig, tmp_path, "kpgrid")


def test_select_qualitative():
    e = np.array([0.5, 0.1, np.nan, 0.3, 0.9, 0.2])
    sel = P.select_qualitative(e, n=2)
    # sorted valid: 1 (0.1), 5 (0.2), 3 (0.3), 0 (0.5), 4 (0.9)
    np.testing.assert_array_equal(sel["best"], [1, 5])
    np.testing.assert_array_equal(sel["worst"], [4, 0])
    np.testing.assert_array_equal(sel["median"], [5, 3])
    sel = P.select_qualitative(e, n=10)
    assert len(sel["best"]) == 5 and 2 not in sel["median"]
