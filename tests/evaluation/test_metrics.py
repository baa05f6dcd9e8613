"""Metrics against hand-computed values on tiny arrays."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mle_hand_pipeline.evaluation import metrics as M


@pytest.fixture
def case():
    """2 crops, 3 keypoints; crop 1's keypoint 2 is unlabelled. Ground truth at the origin.

    crop 0 (box 10): offsets (1,0) (0,2) (3,4)  -> px distances 1, 2, 5 -> e = 0.1, 0.2, 0.5
    crop 1 (box 20): offsets (2,0) (6,0) (99,99, unlabelled) -> px 2, 6 -> e = 0.1, 0.3
    """
    gt = np.zeros((2, 3, 2))
    pred = np.array(
        [
            [[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]],
            [[2.0, 0.0], [6.0, 0.0], [99.0, 99.0]],
        ]
    )
    visible = np.array([[True, True, True], [True, True, False]])
    norm = np.array([10.0, 20.0])
    return pred, gt, visible, norm


def test_normalised_errors(case):
    pred, gt, _, norm = case
    e = M.normalised_errors(pred, gt, norm)
    assert e.shape == (2, 3)
    np.testing.assert_allclose(e[0], [0.1, 0.2, 0.5])
    np.testing.assert_allclose(e[1, :2], [0.1, 0.3])


def test_nme_pooled_and_per_sample(case):
    pred, gt, vis, norm = case
    e = M.normalised_errors(pred, gt, norm)
    # pooled: (0.1 + 0.2 + 0.5 + 0.1 + 0.3) / 5 = 1.2 / 5 = 0.24
    assert M.nme(e, vis) == pytest.approx(0.24)
    # per sample (paper eq. 9): crop 0 = 0.8 / 3, crop 1 = 0.4 / 2 = 0.2; mean = (0.26667 + 0.2) / 2
    assert M.nme(e, vis, per_sample=True) == pytest.approx((0.8 / 3 + 0.2) / 2)
    np.testing.assert_allclose(M.sample_nme(e, vis), [0.8 / 3, 0.2])
    # all visible -> the two agree
    all_vis = np.ones_like(vis)
    assert M.nme(e, all_vis) == pytest.approx(M.nme(e, all_vis, per_sample=True))


def test_nme_box_normalisation(case):
    pred, gt, vis, norm = case
    # doubling the box halves the NME: 0.24 -> 0.12
    assert M.nme(M.normalised_errors(pred, gt, 2 * norm), vis) == pytest.approx(0.12)


def test_unlabelled_coordinates_are_ignored(case):
    pred, gt, vis, norm = case
    pred2 = pred.copy()
    pred2[1, 2] = np.nan
    e = M.normalised_errors(pred2, gt, norm)
    assert M.nme(e, vis) == pytest.approx(0.24)
    assert M.pck(e, vis, 0.2) == pytest.approx(0.6)
    assert M.epe(pred2, gt, vis) == pytest.approx(3.2)


def test_pck_inclusive(case):
    pred, gt, vis, norm = case
    e = M.normalised_errors(pred, gt, norm)
    # errors 0.1 0.2 0.5 0.1 0.3: e <= 0.1 -> 2 of 5 (the two exact 0.1 count), e <= 0.2 -> 3 of 5
    assert M.pck(e, vis, 0.1) == pytest.approx(0.4)
    assert M.pck(e, vis, 0.2) == pytest.approx(0.6)
    assert M.pck(e, vis, 0.09) == 0.0
    assert M.pck(e, vis, 0.5) == 1.0
    _, values = M.pck_curve(e, vis, [0.0, 0.1, 0.2, 0.3, 0.5])
    np.testing.assert_allclose(values, [0.0, 0.4, 0.6, 0.8, 1.0])


def test_auc_step_curves():
    # trapezoid of (0,0)-(0.1,1)-(0.2,1): 0.05 + 0.1 = 0.15; / 0.2 = 0.75
    assert M.auc(np.array([0.0, 0.1, 0.2]), np.array([0.0, 1.0, 1.0])) == pytest.approx(0.75)
    # every error 0.1025 on the default 41-point grid (step 0.005): PCK 0 up to 0.1, 1 from 0.105;
    # area = 0.5 * 0.005 (ramp) + 0.095 (flat) = 0.0975; / 0.2 = 0.4875
    e = np.full((3, 4), 0.1025)
    thr, values = M.pck_curve(e, np.ones((3, 4), bool))
    assert thr.shape == (41,)
    assert M.auc(thr, values) == pytest.approx(0.4875)
    # perfect predictions: 1 everywhere -> 1
    assert M.auc(*M.pck_curve(np.zeros((2, 2)), np.ones((2, 2), bool))) == pytest.approx(1.0)


def test_mmpose_pck_strict_per_keypoint_annotation_box(case):
    pred, gt, vis, norm = case
    # e = 0.1 0.2 0.5 (crop 0), 0.1 0.3 (crop 1). Per keypoint, strict e < 0.2: kp0 2/2, kp1 0/2
    # (0.2 is not < 0.2), kp2 0/1 -> mean 1/3 (our inclusive pooled PCK gives 3/5).
    assert M.mmpose_pck(pred, gt, vis, norm, 0.2) == pytest.approx(1 / 3)
    assert M.pck(M.normalised_errors(pred, gt, norm), vis, 0.2) == pytest.approx(0.6)
    # at 0.25: kp0 1, kp1 1/2, kp2 0 -> 0.5 per keypoint, where pooling would give 3/5
    assert M.mmpose_pck(pred, gt, vis, norm, 0.25) == pytest.approx(0.5)
    # the box is the annotation box, not the tight one: a box 1.2x larger turns 0.2 into 0.1667 < 0.2
    assert M.mmpose_pck(pred, gt, vis, 1.2 * norm, 0.2) == pytest.approx((1 + 0.5 + 0) / 3)


def test_zero_size_box_is_left_out_and_counted(case):
    pred, gt, vis, norm = case
    # a third crop whose visible keypoints all sit at one point: box 0, no division by zero
    pred3 = np.concatenate([pred, np.ones((1, 3, 2))])
    gt3 = np.concatenate([gt, np.zeros((1, 3, 2))])
    vis3 = np.concatenate([vis, np.array([[True, True, False]])])
    norm3 = np.append(norm, M.hand_box_size(gt3[2:], vis3[2:]))
    assert norm3[2] == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a division by zero would warn
        e = M.normalised_errors(pred3, gt3, norm3)
        out = M.evaluate(pred3, gt3, vis3, norm3, pred_src=pred3, gt_src=gt3, mmpose_box_px=norm3)
    assert np.isnan(e[2]).all()
    np.testing.assert_array_equal(M.zero_box_crops(vis3, norm3), [2])
    # the normalised metrics equal those of the first two crops alone; the pixel ones see all three
    assert out["n_zero_box"] == 1.0
    assert out["nme"] == pytest.approx(0.24) and out["pck_0.2"] == pytest.approx(0.6)
    assert out["mmpose_pck_0.2"] == pytest.approx(1 / 3)
    assert out["epe_px"] == pytest.approx((16 + 2 * np.sqrt(2)) / 7)
    # NaN and inf boxes are left out the same way; a crop with nothing labelled is not counted
    assert M.zero_box_crops(vis3, [np.nan, np.inf, 0.0]).tolist() == [0, 1, 2]
    assert M.zero_box_crops(np.zeros((1, 3), bool), [0.0]).tolist() == []
    per_kp, _ = M.evaluation_tables(pred3, gt3, vis3, norm3)
    np.testing.assert_allclose(per_kp["nme"], [0.1, 0.25, 0.5])


def test_epe(case):
    pred, gt, vis, _ = case
    # (1 + 2 + 5 + 2 + 6) / 5 = 3.2 px
    assert M.epe(pred, gt, vis) == pytest.approx(3.2)


def test_mmpose_auc_hand_example(case):
    pred, gt, vis, _ = case
    # px distances: kp0 [1, 2], kp1 [2, 6], kp2 [5]; thresholds r_i = 1.5 i, i = 0..19, strict d < r.
    # per-keypoint accuracy, averaged over the 3 keypoints:
    #  i=0 (0):    0, 0, 0           -> 0
    #  i=1 (1.5):  0.5, 0, 0         -> 1/6
    #  i=2 (3):    1, 0.5, 0         -> 1/2
    #  i=3 (4.5):  1, 0.5, 0         -> 1/2
    #  i=4 (6):    1, 0.5, 1         -> 5/6   (d = 6 is not < 6)
    #  i=5..19:    1, 1, 1           -> 1 (15 times)
    # AUC = (0 + 1/6 + 1/2 + 1/2 + 5/6 + 15) / 20 = 17 / 20 = 0.85
    assert M.mmpose_auc(pred, gt, vis) == pytest.approx(0.85)
    assert M.mmpose_auc(gt, gt, vis) == pytest.approx(19 / 20)  # r_0 = 0 never counts


def test_per_keypoint_nme_and_nan():
    gt = np.zeros((2, 4, 2))
    pred = np.zeros((2, 4, 2))
    pred[:, :, 0] = [[1, 2, 5, 7], [1, 3, 9, 7]]
    vis = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=bool)
    e = M.normalised_errors(pred, gt, np.array([10.0, 10.0]))
    # kp0 (0.1 + 0.1)/2, kp1 (0.2 + 0.3)/2, kp2 only crop 0 = 0.5, kp3 never labelled -> NaN
    out = M.per_keypoint_nme(e, vis)
    np.testing.assert_allclose(out[:3], [0.1, 0.25, 0.5])
    assert np.isnan(out[3])
    pk = M.per_keypoint_pck(e, vis, 0.2)
    np.testing.assert_allclose(pk[:3], [1.0, 0.5, 0.0])
    assert np.isnan(pk[3])


def test_per_stage(case):
    pred, gt, vis, norm = case
    stages = np.stack([3 * pred, 2 * pred, pred])  # errors scale with the offsets
    errs = M.stage_errors(stages, gt, norm)
    assert errs.shape == (3, 2, 3)
    np.testing.assert_allclose(M.per_stage_nme(errs, vis), [0.72, 0.48, 0.24])
    # stage 1 errors 0.3 0.6 1.5 0.3 0.9 -> 0 of 5 <= 0.2; stage 2: 0.2 0.4 1.0 0.2 0.6 -> 2 of 5
    np.testing.assert_allclose(M.per_stage_pck(errs, vis, 0.2), [0.0, 0.4, 0.6])


def test_hand_box_size():
    kp = np.array([[[0, 0], [4, 1], [2, 3], [100, 100]], [[5, 5], [5, 5], [5, 5], [5, 5]]], float)
    vis = np.array([[1, 1, 1, 0], [1, 0, 0, 0]], bool)
    # crop 0: w = 4, h = 3 -> 4 (the unlabelled far point is ignored); crop 1: single point -> 0
    np.testing.assert_allclose(M.hand_box_size(kp, vis), [4.0, 0.0])
    assert np.isnan(M.hand_box_size(kp, np.zeros_like(vis))).all()


def test_uncertainty_shares():
    # sigma 2 px everywhere. Coordinates: kp0 |e| = 1, 1 (0.5 sigma); kp1 3, 3 (1.5 sigma);
    # kp2 2 (exactly 1 sigma, inclusive), 4 (exactly 2 sigma); kp3 unlabelled.
    # within 1 sigma: 2 + 0 + 1 = 3 of 6 = 0.5; within 2 sigma: 6 of 6 = 1.0
    err = np.array([[[1.0, -1.0], [3.0, -3.0], [2.0, 4.0], [50.0, 50.0]]])
    sig = np.full((1, 4, 2), 2.0)
    vis = np.array([[1, 1, 1, 0]], bool)
    s = M.uncertainty_stats(err, sig, vis)
    assert s["within_1sigma"] == pytest.approx(0.5)
    assert s["within_2sigma"] == pytest.approx(1.0)
    assert s["n_keypoints"] == 3
    assert s["mean_sigma_px"] == pytest.approx(2.0)
    # err / sigma over the 6 labelled coordinates: 0.5, 0.5, 1.5, 1.5, 1, 2
    assert s["error_sigma_rms"] == pytest.approx(np.sqrt((0.25 * 2 + 2.25 * 2 + 1 + 4) / 6))
    assert np.isnan(s["sigma_error_spearman"])  # constant sigma: undefined correlation


def test_calibrated_gaussian_errors_hit_the_ideal_shares():
    rng = np.random.default_rng(0)
    sig = rng.uniform(1.0, 10.0, size=(4000, 21, 1)).repeat(2, axis=2)
    err = rng.normal(size=sig.shape) * sig
    s = M.uncertainty_stats(err, sig, np.ones((4000, 21), bool))
    assert s["error_sigma_rms"] == pytest.approx(1.0, abs=0.01)
    assert s["within_1sigma"] == pytest.approx(M.GAUSSIAN_WITHIN[1], abs=0.01)
    assert s["within_2sigma"] == pytest.approx(M.GAUSSIAN_WITHIN[2], abs=0.01)
    laplace = rng.laplace(size=sig.shape) * sig / np.sqrt(2)  # RMS sigma
    s = M.uncertainty_stats(laplace, sig, np.ones((4000, 21), bool))
    assert s["within_1sigma"] == pytest.approx(M.LAPLACE_WITHIN[1], abs=0.01)
    assert s["within_2sigma"] == pytest.approx(M.LAPLACE_WITHIN[2], abs=0.01)


def test_uncertainty_spearman_monotone():
    sigma = np.arange(1.0, 11.0)  # 10 keypoints, increasing scale
    sig = np.repeat(sigma[None, :, None], 2, axis=2)
    err = np.repeat((sigma**3)[None, :, None], 2, axis=2)  # monotone, not linear
    s = M.uncertainty_stats(err, sig, np.ones((1, 10), bool))
    assert s["sigma_error_spearman"] == pytest.approx(1.0)
    assert 0.8 < s["sigma_error_pearson"] < 1.0
    s_neg = M.uncertainty_stats(err[:, ::-1], sig, np.ones((1, 10), bool))
    assert s_neg["sigma_error_spearman"] == pytest.approx(-1.0)


def test_calibration_curve():
    # per coordinate: sigma 1 with |e| 1, 1; sigma 4 with |e| 3, 5; 2 quantile bins split them.
    err = np.array([[[1.0, -1.0], [3.0, -5.0], [0.0, 0.0]]])
    sig = np.array([[[1.0, 1.0], [4.0, 4.0], [9.0, 9.0]]])
    vis = np.array([[1, 1, 0]], bool)
    c = M.calibration_curve(err, sig, vis, n_bins=2)
    np.testing.assert_allclose(c["sigma_mean"], [1.0, 4.0])
    np.testing.assert_allclose(c["mean_abs_error"], [1.0, 4.0])
    np.testing.assert_allclose(c["rms_error"], [1.0, np.sqrt(17.0)])  # sqrt((9 + 25) / 2)
    np.testing.assert_array_equal(c["count"], [2, 2])


def test_evaluate_names_and_values(case):
    pred, gt, vis, norm = case
    stages = np.stack([2 * pred, pred])
    sig = np.full((2, 3, 2), 2.0)
    out = M.evaluate(stages, gt, vis, norm, pred_src=pred, gt_src=gt, sigmas=sig)
    expected = {
        "nme",
        "nme_per_sample",
        "pck_0.05",
        "pck_0.1",
        "pck_0.15",
        "pck_0.2",
        "auc_0.2",
        "n_zero_box",
        "epe_px",
        "mmpose_auc",
        "centre_slope",
        "hand_spread",
        "stage1_nme",
        "stage1_pck_0.2",
        "stage1_centre_slope",
        "stage1_hand_spread",
        "stage2_nme",
        "stage2_pck_0.2",
        "stage2_centre_slope",
        "stage2_hand_spread",
        "sigma_error_spearman",
        "sigma_error_pearson",
        "within_1sigma",
        "within_2sigma",
        "error_sigma_rms",
        "mean_sigma_px",
    }
    assert set(out) == expected
    assert all("@" not in k for k in out)
    assert all(isinstance(v, float) for v in out.values())
    assert out["nme"] == pytest.approx(0.24)
    assert out["stage1_nme"] == pytest.approx(0.48)
    assert out["stage2_nme"] == out["nme"]
    assert out["pck_0.2"] == pytest.approx(0.6)
    assert out["epe_px"] == pytest.approx(3.2)
    assert out["mmpose_auc"] == pytest.approx(0.85)
    # final-stage signed errors: |e| coords 1,0 0,2 3,4 2,0 6,0 vs sigma 2: <= 2 -> 7 of 10
    assert out["within_1sigma"] == pytest.approx(0.7)
    # a single stage (N, K, 2) and no source / sigma -> fewer keys
    out1 = M.evaluate(pred, gt, vis, norm)
    assert "epe_px" not in out1 and "within_1sigma" not in out1 and "stage1_nme" in out1


def test_evaluation_tables(case):
    pred, gt, vis, norm = case
    per_kp, per_stage = M.evaluation_tables(np.stack([2 * pred, pred]), gt, vis, norm)
    assert list(per_kp.columns) == ["keypoint", "name", "nme", "pck_0.2", "n_visible"]
    assert list(per_kp["name"]) == ["wrist", "thumb_cmc", "thumb_mcp"]
    np.testing.assert_allclose(per_kp["nme"], [0.1, 0.25, 0.5])
    np.testing.assert_array_equal(per_kp["n_visible"], [2, 2, 1])
    assert list(per_stage.columns) == ["stage", "nme", "pck_0.2", "auc_0.2"]
    np.testing.assert_allclose(per_stage["nme"], [0.48, 0.24])
    assert per_stage["auc_0.2"].iloc[1] > per_stage["auc_0.2"].iloc[0]


def test_metric_key():
    assert M.metric_key("pck", 0.2) == "pck_0.2"
    assert M.metric_key("pck", 0.05) == "pck_0.05"


_coords = arrays(np.float64, (3, 5, 2), elements=st.floats(-100, 100, allow_nan=False))
_vis = arrays(np.bool_, (3, 5))


@settings(max_examples=60, deadline=None)
@given(
    pred=_coords,
    gt=_coords,
    vis=_vis,
    shift=st.tuples(st.floats(-50, 50), st.floats(-50, 50)),
    scale=st.floats(0.5, 4.0),
    t1=st.floats(0, 1),
    t2=st.floats(0, 1),
)
def test_properties(pred, gt, vis, shift, scale, t1, t2):
    vis[0, 0] = True  # at least one labelled keypoint
    norm = np.array([10.0, 20.0, 30.0])
    e = M.normalised_errors(pred, gt, norm)
    # PCK is non-decreasing in the threshold
    lo, hi = sorted((t1, t2))
    assert M.pck(e, vis, lo) <= M.pck(e, vis, hi)
    _, curve = M.pck_curve(e, vis)
    assert np.all(np.diff(curve) >= 0)
    # NME is invariant to translating prediction and ground truth together
    s = np.array(shift)
    e_shift = M.normalised_errors(pred + s, gt + s, norm)
    assert M.nme(e_shift, vis) == pytest.approx(M.nme(e, vis), rel=1e-9, abs=1e-9)
    # scaling the box by c divides the NME by c
    assert M.nme(M.normalised_errors(pred, gt, scale * norm), vis) == pytest.approx(
        M.nme(e, vis) / scale, rel=1e-9, abs=1e-12
    )
    # scaling the whole image (coordinates and box) leaves the NME unchanged
    assert M.nme(M.normalised_errors(scale * pred, scale * gt, scale * norm), vis) == pytest.approx(
        M.nme(e, vis), rel=1e-9, abs=1e-12
    )


def test_centre_slope_and_hand_spread_are_one_for_exact_predictions_and_read_a_shrunk_hand():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 64, size=(5, 21, 2))
    visible = rng.random((5, 21)) > 0.2
    assert M.centre_slope(gt, gt, visible) == pytest.approx(1.0)
    assert M.hand_spread(gt, gt, visible) == pytest.approx(1.0)
    centre = np.array([32.0, 32.0])
    shrunk = centre + 0.6 * (gt - centre) + 3.0  # towards the middle, and shifted
    assert M.centre_slope(shrunk, gt, visible) == pytest.approx(0.6)
    assert M.hand_spread(shrunk, gt, visible) == pytest.approx(0.6)
    hidden = np.where(visible[..., None], shrunk, np.nan)  # unlabelled coordinates are never read
    assert M.hand_spread(hidden, gt, visible) == pytest.approx(0.6)
    assert M.centre_slope(hidden, gt, visible) == pytest.approx(0.6)


def test_hand_spread_is_a_ratio_of_sizes_pooled_over_crops():
    gt = np.array([[[0.0, 0.0], [2.0, 0.0]], [[0.0, 0.0], [0.0, 6.0]]])  # spreads 1 and 3
    pred = np.array([[[0.0, 0.0], [2.0, 0.0]], [[0.0, 0.0], [0.0, 2.0]]])  # spreads 1 and 1
    visible = np.ones((2, 2), bool)
    assert M.hand_spread(pred, gt, visible) == pytest.approx(2 / 4)
    assert np.isnan(M.hand_spread(pred, gt, np.eye(2, dtype=bool)))  # no crop with 2 visible keypoints
    assert np.isnan(M.centre_slope(pred, gt, np.zeros((2, 2), bool)))


def test_evaluate_reports_the_shrinkage_per_stage():
    gt = np.random.default_rng(1).uniform(0, 64, size=(4, 21, 2))
    visible = np.ones((4, 21), bool)
    stages = np.stack([32 + 0.5 * (gt - 32), gt])
    out = M.evaluate(stages, gt, visible, M.hand_box_size(gt, visible))
    assert out["stage1_hand_spread"] == pytest.approx(0.5)
    assert out["stage1_centre_slope"] == pytest.approx(0.5)
    assert out["hand_spread"] == pytest.approx(1.0) == out["stage2_centre_slope"]
