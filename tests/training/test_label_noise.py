"""Label noise: exact counts, only visible training keypoints, reproducible, consistent columns."""

import re

import numpy as np
import pandas as pd
import pytest

from mle_hand_pipeline.datasets.crops import CropBox, source_to_crop
from mle_hand_pipeline.datasets.records import stack_column
from mle_hand_pipeline.training.label_noise import LabelNoise, corrupt_labels


def _table(n: int = 40, k: int = 21, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        box = CropBox(float(rng.uniform(0, 50)), float(rng.uniform(0, 50)), float(rng.uniform(60, 120)))
        source = np.array([box.x0, box.y0]) + rng.uniform(0.2, 0.8, (k, 2)) * box.side
        mirrored = bool(i % 2)
        crop = source_to_crop(source, box, 256, mirrored)
        visible = rng.random(k) < 0.7
        visible[:2] = True
        x, y = crop[visible, 0], crop[visible, 1]
        rows.append(
            {
                "split": "train",
                "crop_size": 256,
                "box_x0": box.x0,
                "box_y0": box.y0,
                "box_side": box.side,
                "mirrored": mirrored,
                "keypoints_source": source.tolist(),
                "keypoints_crop": crop.tolist(),
                "visible": visible.tolist(),
                "hand_size": max(np.ptp(x), np.ptp(y)),
            }
        )
    return pd.DataFrame(rows)


def _moved(before: pd.DataFrame, after: pd.DataFrame) -> np.ndarray:
    a = stack_column(before["keypoints_crop"])
    b = stack_column(after["keypoints_crop"])
    return np.linalg.norm(b - a, axis=-1)


def test_no_noise_by_default_leaves_labels_alone():
    table = _table()
    out, stats = corrupt_labels(table, LabelNoise())
    assert not LabelNoise().active
    assert (_moved(table, out) == 0).all()
    assert stats["n_jittered"] == stats["n_outliers"] == stats["label_nme"] == 0
    assert stats["n_visible"] == stack_column(table["visible"]).sum()
    # jitter of 0 px is no noise either, whatever the fraction
    assert (_moved(table, corrupt_labels(table, LabelNoise(fraction=0.5))[0]) == 0).all()


def test_exact_counts_only_visible_and_outliers_inside_the_crop():
    table = _table()
    visible = stack_column(table["visible"]).astype(bool)
    m = int(visible.sum())
    noise = LabelNoise(fraction=0.3, jitter_px=3.0, outlier_fraction=0.1, seed=5)
    out, stats = corrupt_labels(table, noise)
    moved = _moved(table, out)
    assert stats["n_jittered"] == round(0.3 * m) and stats["n_outliers"] == round(0.1 * m)
    assert (moved[~visible] == 0).all()  # invisible keypoints never change
    assert (moved > 0).sum() == stats["n_jittered"] + stats["n_outliers"] > 0  # labels did move
    noisy = stack_column(out["keypoints_crop"])
    far = moved > 20  # 20 px: ~7 jitter sigmas, so only outliers move that far
    assert far.sum() <= stats["n_outliers"] and far.sum() >= 0.8 * stats["n_outliers"] > 0
    assert ((noisy >= 0) & (noisy < 256)).all(axis=-1)[far].all()  # outliers land inside the crop
    # label NME: the corrupted labels' normalised error against the clean ones
    expected = (moved / table["hand_size"].to_numpy()[:, None])[visible].mean()
    assert stats["label_nme"] == pytest.approx(expected)
    assert stats["mean_shift_px"] == pytest.approx(moved[visible].mean())
    # the input table is not modified
    assert (_moved(table, _table()) == 0).all()


def test_jitter_has_the_requested_scale():
    table = _table(n=400)
    out, stats = corrupt_labels(table, LabelNoise(fraction=1.0, jitter_px=4.0, seed=1))
    offsets = (stack_column(out["keypoints_crop"]) - stack_column(table["keypoints_crop"]))[
        stack_column(table["visible"]).astype(bool)
    ]
    assert stats["n_jittered"] == len(offsets) > 5000
    assert offsets.std(axis=0) == pytest.approx([4.0, 4.0], rel=0.05)
    assert np.abs(offsets.mean(axis=0)).max() < 0.2
    # E||offset|| of a 2-D Gaussian with std s per coordinate is s * sqrt(pi / 2)
    assert stats["mean_jitter_shift_px"] == pytest.approx(4.0 * np.sqrt(np.pi / 2), rel=0.05)


def test_reproducible_and_source_column_consistent():
    table = _table()
    noise = LabelNoise(fraction=0.5, jitter_px=2.0, outlier_fraction=0.2, seed=3)
    first, _ = corrupt_labels(table, noise)
    again, _ = corrupt_labels(table, noise)
    other, _ = corrupt_labels(table, LabelNoise(fraction=0.5, jitter_px=2.0, outlier_fraction=0.2, seed=4))
    assert np.array_equal(stack_column(first["keypoints_crop"]), stack_column(again["keypoints_crop"]))
    assert not np.allclose(stack_column(first["keypoints_crop"]), stack_column(other["keypoints_crop"]))
    for row in first.itertuples(index=False):
        back = source_to_crop(
            np.asarray(row.keypoints_source), CropBox(row.box_x0, row.box_y0, row.box_side), 256, row.mirrored
        )
        np.testing.assert_allclose(back, np.asarray(row.keypoints_crop), atol=1e-9)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"fraction": 0.8, "outlier_fraction": 0.3},
            "label_noise.fraction + outlier_fraction must be <= 1, got 0.8 + 0.3",
        ),
        ({"fraction": -0.1}, "label_noise.fraction must be in [0, 1], got -0.1"),
        ({"outlier_fraction": 1.5}, "label_noise.outlier_fraction must be in [0, 1], got 1.5"),
        ({"jitter_px": -1.0}, "label_noise.jitter_px must be >= 0, got -1.0"),
        ({"typo": 1}, "label_noise has no key typo; its keys: fraction, jitter_px, outlier_fraction, seed"),
    ],
)
def test_invalid_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        LabelNoise.from_params(settings)
