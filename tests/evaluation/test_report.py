"""The evaluation report against hand-computed values: missing keypoints, box normalisation, source
pixels through a mirrored crop, per-stage/per-keypoint tables, sigmas; and its figures."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mle_hand_pipeline.datasets.records import stack_column
from mle_hand_pipeline.evaluation import metrics as M
from mle_hand_pipeline.evaluation import plots as P
from mle_hand_pipeline.evaluation import report as R
from mle_hand_pipeline.keypoints import PAPER_KEYPOINTS

K = 21


def _gt():
    """Crop 0: keypoints 0-14 visible, box 40 x 20 (normaliser 40); 15-20 unlabelled (NaN).
    Crop 1: all 21 visible, box 10 x 20 (normaliser 20). Integer coordinates: exact arithmetic."""
    gt0 = np.full((K, 2), np.nan)
    gt0[:15, 0] = 30 + (np.arange(15) % 5) * 10  # x in 30..70 -> w = 40
    gt0[:15, 1] = 40 + (np.arange(15) // 5) * 10  # y in 40..60 -> h = 20
    gt1 = np.stack([50 + (np.arange(K) % 2) * 10, 30 + (np.arange(K) % 3) * 10], axis=-1).astype(float)
    vis = np.ones((2, K), bool)
    vis[0, 15:] = False
    return np.stack([gt0, gt1]), vis


def _table():
    gt, vis = _gt()
    boxes = [(10.0, 20.0, 50.0, False), (5.0, 7.0, 80.0, True)]  # x0, y0, side, mirrored; crops of 100 px
    rows = []
    for i, (x0, y0, side, mirrored) in enumerate(boxes):
        u = 100 - gt[i, :, 0] if mirrored else gt[i, :, 0]
        source = np.stack([x0 + u * side / 100, y0 + gt[i, :, 1] * side / 100], axis=-1)
        rows.append(
            {
                "split": "test",
                "sample_id": i,
                "image_id": i,
                "side": "right",
                "crop_path": f"c{i}.png",
                "crop_size": 100,
                "box_x0": x0,
                "box_y0": y0,
                "box_side": side,
                "mirrored": mirrored,
                "keypoints_source": source.tolist(),
                "keypoints_crop": gt[i].tolist(),
                "visible": vis[i].tolist(),
                "hand_size": [40.0, 20.0][i],
            }
        )
    return pd.DataFrame(rows)


def _predictions():
    """Stage 2 (final): crop 0 off by (4, 0) px -> e = 0.1; crop 1 off by (0, 3) -> e = 0.15.
    Stage 1: twice that (e = 0.2 and 0.3). Invisible keypoints are predicted anyway."""
    gt, _ = _gt()
    gt = np.nan_to_num(gt, nan=50.0)
    shift = np.array([[4.0, 0.0], [0.0, 3.0]])[:, None, :]
    coords = np.stack([gt + 2 * shift, gt + shift], axis=1)  # (N, T, K, 2)
    sigmas = np.zeros_like(coords)
    sigmas[0] = [4.0, 1.0]  # crop 0: |e_x| = 4 <= 1 sigma, |e_y| = 0
    sigmas[1] = [1.0, 1.0]  # crop 1: |e_x| = 0, |e_y| = 3 > 2 sigma
    return coords, sigmas


def test_mmpose_box_size_per_dataset():
    table = _table()
    _, vis = _gt()
    gt_src = np.stack([np.asarray(r, dtype=float) for r in table["keypoints_source"]])
    # RHD (and no dataset column): 1.2 x the visible keypoints' box in source pixels. Crop 0: 40 crop
    # px at 50/100 -> 20 src px -> 24; crop 1: 20 crop px at 80/100 -> 16 -> 19.2
    np.testing.assert_allclose(R.mmpose_box_size(table, gt_src, vis), [24.0, 19.2])
    np.testing.assert_allclose(R.mmpose_box_size(table.assign(dataset="rhd"), gt_src, vis), [24.0, 19.2])
    # FreiHAND: MMPose's box is the whole 224 x 224 image
    mixed = table.assign(dataset=["freihand", "rhd"])
    np.testing.assert_allclose(R.mmpose_box_size(mixed, gt_src, vis), [224.0, 19.2])


def test_zero_size_box_crop_is_reported_not_divided(caplog):
    table = _table()
    coords, sigmas = _predictions()
    table.loc[1, "hand_size"] = 0.0  # as if all of crop 1's visible keypoints sat at one point
    report = R.evaluate_predictions(table, coords, sigmas)
    assert report.metrics["n_zero_box"] == 1
    assert report.metrics["nme"] == pytest.approx(0.1)  # crop 0 only
    assert np.isnan(report.predictions["nme"][1])
    assert "c1.png" in caplog.text and "zero-size hand box" in caplog.text


def test_metrics_match_hand_computed_values():
    table = _table()
    coords, sigmas = _predictions()
    gt, vis = _gt()
    np.testing.assert_array_equal(M.hand_box_size(gt, vis), table["hand_size"])  # the normaliser
    report = R.evaluate_predictions(table, coords, sigmas)
    m = report.metrics
    # 15 labelled keypoints at 0.1 and 21 at 0.15; the 6 unlabelled ones are ignored
    assert m["nme"] == pytest.approx((15 * 0.1 + 21 * 0.15) / 36)
    assert m["nme_per_sample"] == pytest.approx((0.1 + 0.15) / 2)
    assert m["pck_0.05"] == 0 and m["pck_0.1"] == pytest.approx(15 / 36)  # inclusive threshold
    assert m["pck_0.15"] == m["pck_0.2"] == 1.0
    # source pixels: crop 0 is scaled by 50/100 (4 px -> 2), crop 1 (mirrored) by 80/100 (3 px -> 2.4)
    assert m["epe_px"] == pytest.approx((15 * 2.0 + 21 * 2.4) / 36)
    assert m["stage1_nme"] == pytest.approx((15 * 0.2 + 21 * 0.3) / 36)
    assert m["stage1_pck_0.2"] == pytest.approx(15 / 36) and m["stage2_pck_0.2"] == 1.0
    paper = np.isin(np.arange(K), PAPER_KEYPOINTS)
    n0, n1 = int((paper & vis[0]).sum()), int(paper.sum())
    assert (n0, n1) == (8, 11)
    assert m["nme_paper11"] == pytest.approx((n0 * 0.1 + n1 * 0.15) / (n0 + n1))
    assert m["n_crops"] == 2 and m["n_keypoints"] == 36 and m["n_zero_box"] == 0
    # MMPose's PCK: RHD box = 1.2 x the visible keypoints' box in source pixels (crop 0: 40 crop px
    # at 50/100 -> 20 src px -> 24; crop 1: 20 at 80/100 -> 16 -> 19.2); errors 2 and 2.4 px pass
    assert m["mmpose_pck_0.2"] == 1.0
    # uncertainty: coordinates within 1 and 2 sigma: crop 0 both (x: 4 <= 4), crop 1 only x (y: 3 > 2)
    assert m["within_1sigma"] == pytest.approx((15 * 2 + 21) / 72)
    assert m["within_2sigma"] == pytest.approx((15 * 2 + 21) / 72)
    assert m["sigma_error_spearman"] == pytest.approx(1.0)  # larger sigma <-> larger error
    assert m["mean_sigma_px"] == pytest.approx((15 * 5 + 21 * 2) / 72)


def test_tables_and_predictions():
    table = _table()
    coords, sigmas = _predictions()
    report = R.evaluate_predictions(table, coords, sigmas)
    kp = report.per_keypoint.set_index("keypoint")
    assert kp.loc[0, "nme"] == pytest.approx(0.125) and kp.loc[0, "n_visible"] == 2
    assert kp.loc[20, "nme"] == pytest.approx(0.15) and kp.loc[20, "n_visible"] == 1
    assert kp["paper_view"].sum() == 11 and kp.loc[4, "paper_view"] and not kp.loc[2, "paper_view"]
    stage = report.per_stage.set_index("stage")
    assert list(stage.index) == [1, 2]
    assert stage.loc[1, "pck_0.2"] == pytest.approx(15 / 36) and stage.loc[2, "pck_0.2"] == 1.0
    curve = report.pck_curve
    assert curve["threshold"].iloc[[0, -1]].tolist() == [0.0, 0.2]
    assert curve.loc[np.isclose(curve["threshold"], 0.12), "pck"].item() == pytest.approx(15 / 36)
    assert report.metrics["auc_0.2"] == pytest.approx(M.auc(curve["threshold"], curve["pck"]))
    assert report.calibration["count"].sum() == 72 and not report.calibration.empty

    preds = report.predictions
    assert preds["nme"].tolist() == pytest.approx([0.1, 0.15])
    # crop 1 is mirrored: x_src = x0 + (100 - u) * side / 100
    final = np.asarray(preds["pred_source"][1])[-1]
    u = coords[1, -1, :, 0]
    np.testing.assert_allclose(final[:, 0], 5 + (100 - u) * 0.8)
    np.testing.assert_allclose(final[:, 1], 7 + coords[1, -1, :, 1] * 0.8)


def test_each_crops_part_of_the_pooled_metrics_and_their_intervals_over_crops():
    table = _table()
    coords, sigmas = _predictions()
    report = R.evaluate_predictions(table, coords, sigmas)
    per_crop = report.per_crop
    assert per_crop["crop_path"].tolist() == table["crop_path"].tolist()
    assert per_crop["n_normalised"].tolist() == [15, 21]
    assert per_crop["nme_sum"].tolist() == pytest.approx([15 * 0.1, 21 * 0.15])
    assert per_crop["pck_0.1_hits"].tolist() == [15, 0]
    for name in M.POOLED_PARTS:  # the parts sum back to every pooled metric
        assert M.pooled(per_crop, name) == pytest.approx(report.metrics[name]), name
    # two crops: a resample is crop 0 twice, crop 1 twice or both, so PCK@0.1 lies in [0, 1] and NME
    # between the two crops' own values
    m = report.metrics
    assert 0.1 - 1e-12 <= m["nme_ci_low"] <= m["nme"] <= m["nme_ci_high"] <= 0.15 + 1e-12
    assert m["pck_0.2_ci_low"] == m["pck_0.2_ci_high"] == 1.0  # every crop all within 0.2


def test_final_stage_only_and_no_sigmas():
    table = _table()
    coords, _ = _predictions()
    report = R.evaluate_predictions(table, coords[:, -1:], None, all_stages=False)
    assert not any(k.startswith("stage") for k in report.metrics)
    assert "within_1sigma" not in report.metrics
    assert report.per_stage["stage"].tolist() == [R.FINAL_STAGE_ONLY]
    assert report.per_stage["pck_0.2"].item() == 1.0
    assert report.calibration.empty and report.predictions["sigma_crop"].isna().all()
    with pytest.raises(ValueError, match="coords must be"):
        R.evaluate_predictions(table, coords[:, -1], None)


def test_figures_from_parquet_round_trip(tmp_path):
    table = _table()
    coords, sigmas = _predictions()
    for i in range(2):
        Image.new("RGB", (100, 100), (90, 60, 40)).save(tmp_path / f"c{i}.png")
    report = R.evaluate_predictions(table, coords, sigmas)
    report.predictions.to_parquet(tmp_path / "p.parquet")
    loaded = pd.read_parquet(tmp_path / "p.parquet")
    np.testing.assert_allclose(stack_column(loaded["pred_crop"]), coords)
    report.predictions = loaded
    figures = P.evaluation_figures(*report.outputs()[1:6], tmp_path, "mle")
    assert set(figures) == {"pck_curve", "per_keypoint_nme", "per_stage_pck", "calibration", "qualitative"}
    assert len(figures["per_keypoint_nme"].axes[0].patches) == len(PAPER_KEYPOINTS)
    assert len(figures["per_stage_pck"].axes[0].lines) == 1
    assert "best 1: NME 0.100" in [ax.get_title() for ax in figures["qualitative"].axes]
    for name, fig in figures.items():
        fig.savefig(tmp_path / f"{name}.png", dpi=50)
    no_sigma = P.calibration_figure(pd.DataFrame(columns=R.CALIBRATION_COLUMNS), "heatmap_l2")
    assert "no uncertainty" in no_sigma.axes[0].texts[0].get_text()
