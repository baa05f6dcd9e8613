"""Keypoint accuracy and uncertainty metrics (pure numpy; no Kedro, no torch).

Shapes: ``N`` test crops, ``K`` (= 21) keypoints, ``T`` stages. Every function takes a ``visible``
mask of shape ``(N, K)`` (bool, or anything ``astype(bool)`` accepts): only labelled keypoints count,
the coordinates of the others are never looked at (they may be NaN).

Normalisation (the paper's): the error of keypoint ``k`` of crop ``n`` is

    e[n, k] = ||pred[n, k] - gt[n, k]||_2 / norm_size[n],
    norm_size[n] = max(w_n, h_n),

where ``(w_n, h_n)`` is the size of the tight bounding box of crop ``n``'s *visible ground-truth*
keypoints, in the same pixel units as ``pred`` and ``gt`` (see :func:`hand_box_size`). Because the
box is measured on the same image as the error, ``e`` does not depend on the units (crop or source
pixels), as long as both use the same ones.

A crop whose normaliser is zero or not finite (e.g. a single visible keypoint, or all visible
keypoints at one point) cannot be normalised: :func:`normalised_errors` gives NaN for it (no
division by zero), and :func:`evaluate` / :func:`evaluation_tables` leave it out of every normalised
metric and count it (``n_zero_box``), as MMPose's ``keypoint_pck_accuracy`` leaves out samples with a
zero normaliser.

Two PCKs, two conventions (see :func:`pck` and :func:`mmpose_pck`): ``pck_s`` is the paper's
(tight box of the visible keypoints, ``e <= s``, pooled over keypoints); ``mmpose_pck_s`` is
MMPose's ``PCKAccuracy(norm_item='bbox')`` (the annotation box, ``e < s``, averaged per keypoint),
the number to set beside MMPose's model-zoo tables.

Metric names returned by :func:`evaluate` contain no ``@`` (MLflow metric names allow only
alphanumerics, ``_ - . /`` and spaces): PCK at 0.2 is ``"pck_0.2"``, see :func:`metric_key`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mle_hand_pipeline.keypoints import KEYPOINT_NAMES

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2)
# The PCK curve whose area is reported as ``auc_0.2``: 41 thresholds, 0 to 0.2 in steps of 0.005.
PCK_CURVE_THRESHOLDS = np.linspace(0.0, 0.2, 41)

# P(|e| <= m sigma) for an error whose RMS is sigma: Gaussian erf(m / sqrt 2), Laplace 1 - exp(-m sqrt 2).
GAUSSIAN_WITHIN = {m: math.erf(m / math.sqrt(2)) for m in (1, 2)}
LAPLACE_WITHIN = {m: 1 - math.exp(-m * math.sqrt(2)) for m in (1, 2)}


def metric_key(name: str, threshold: float) -> str:
    """MLflow-safe metric name for a thresholded metric: ``metric_key("pck", 0.2) == "pck_0.2"``."""
    return f"{name}_{float(threshold):g}"


def _mask(visible: np.ndarray) -> np.ndarray:
    return np.asarray(visible).astype(bool)


def hand_box_size(keypoints: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """The paper's normaliser: ``max(w, h)`` of the tight box around each crop's visible keypoints.

    Args:
        keypoints: ``(N, K, 2)`` ground-truth ``(x, y)``.
        visible: ``(N, K)`` bool.

    Returns:
        ``(N,)`` float; NaN for a crop with no visible keypoint.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    vis = _mask(visible)
    x = np.where(vis, kp[..., 0], np.nan)
    y = np.where(vis, kp[..., 1], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows -> NaN
        w = np.nanmax(x, axis=1) - np.nanmin(x, axis=1)
        h = np.nanmax(y, axis=1) - np.nanmin(y, axis=1)
    return np.maximum(w, h)


def usable_box(norm_size: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: the normaliser is finite and positive (errors can be divided by it)."""
    size = np.asarray(norm_size, dtype=np.float64)
    return np.isfinite(size) & (size > 0)


def normalisable(visible: np.ndarray, norm_size: np.ndarray) -> np.ndarray:
    """``visible`` with every keypoint of a crop whose normaliser is zero or not finite cleared.

    Args:
        visible: ``(N, K)``.
        norm_size: ``(N,)``.

    Returns:
        ``(N, K)`` bool.
    """
    return _mask(visible) & usable_box(norm_size)[:, None]


def zero_box_crops(visible: np.ndarray, norm_size: np.ndarray) -> np.ndarray:
    """Indices of the crops that have a labelled keypoint but a zero or non-finite normaliser."""
    return np.flatnonzero(_mask(visible).any(axis=1) & ~usable_box(norm_size))


def normalised_errors(pred: np.ndarray, gt: np.ndarray, norm_size: np.ndarray) -> np.ndarray:
    """``e[n, k] = ||pred[n, k] - gt[n, k]|| / norm_size[n]``.

    Args:
        pred: ``(N, K, 2)`` predicted ``(x, y)``.
        gt: ``(N, K, 2)`` ground truth, same units as ``pred``.
        norm_size: ``(N,)`` ``max(w, h)`` of the ground-truth hand box, same units.

    Returns:
        ``(N, K)`` normalised Euclidean errors (values at invisible keypoints are meaningless). A crop
        whose ``norm_size`` is zero or not finite gets NaN (see :func:`normalisable`).
    """
    diff = np.asarray(pred, dtype=np.float64) - np.asarray(gt, dtype=np.float64)
    dist = np.linalg.norm(diff, axis=-1)
    size = np.asarray(norm_size, dtype=np.float64)
    ok = usable_box(size)
    return np.where(ok[:, None], dist / np.where(ok, size, 1.0)[:, None], np.nan)


def sample_nme(errors: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Per-crop NME: mean of ``errors[n]`` over the crop's visible keypoints.

    Args:
        errors: ``(N, K)``.
        visible: ``(N, K)``.

    Returns:
        ``(N,)``; NaN for a crop with no visible keypoint.
    """
    vis = _mask(visible)
    err = np.where(vis, np.asarray(errors, dtype=np.float64), 0.0)
    count = vis.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, err.sum(axis=1) / count, np.nan)


def nme(errors: np.ndarray, visible: np.ndarray, per_sample: bool = False) -> float:
    """Normalised mean error.

    ``per_sample=False`` (default), pooled over every labelled keypoint of every crop:

        NME = sum_{n,k} v[n,k] e[n,k] / sum_{n,k} v[n,k]

    ``per_sample=True``, the paper's eq. (9): the mean over each crop's keypoints, then the mean over
    crops (crops with no labelled keypoint are dropped):

        NME = 1/D sum_n ( sum_k v[n,k] e[n,k] / sum_k v[n,k] )

    The two agree when every crop has the same number of labelled keypoints (e.g. all visible, as
    in FreiHAND); with missing keypoints the per-sample form gives more weight to each keypoint of a
    crop with few labelled keypoints.

    Args:
        errors: ``(N, K)`` normalised errors.
        visible: ``(N, K)``.

    Returns:
        float (NaN if nothing is visible).
    """
    vis = _mask(visible)
    if not vis.any():
        return float("nan")
    if per_sample:
        return float(np.nanmean(sample_nme(errors, vis)))
    return float(np.asarray(errors, dtype=np.float64)[vis].mean())


def pck(errors: np.ndarray, visible: np.ndarray, threshold: float) -> float:
    """Percentage of correct keypoints, pooled over all labelled keypoints (paper eq. (8)).

        PCK@s = #{(n, k) : v[n,k] and e[n,k] <= s} / #{(n, k) : v[n,k]}

    The comparison is inclusive (``e <= s``), as in the paper. (MMPose uses ``e < s``.)

    Args:
        errors: ``(N, K)`` normalised errors.
        visible: ``(N, K)``.
        threshold: ``s``.

    Returns:
        float in ``[0, 1]`` (NaN if nothing is visible).
    """
    vis = _mask(visible)
    if not vis.any():
        return float("nan")
    return float((np.asarray(errors, dtype=np.float64)[vis] <= threshold).mean())


def pck_curve(
    errors: np.ndarray, visible: np.ndarray, thresholds: Sequence[float] | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """PCK at each threshold (default 41 thresholds from 0 to 0.2: :data:`PCK_CURVE_THRESHOLDS`).

    Returns:
        ``(thresholds (S,), values (S,))``.
    """
    thr = PCK_CURVE_THRESHOLDS if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    vis = _mask(visible)
    e = np.asarray(errors, dtype=np.float64)[vis]
    if e.size == 0:
        return thr.copy(), np.full(thr.shape, np.nan)
    values = (e[None, :] <= thr[:, None]).mean(axis=1)
    return thr.copy(), values


def auc(thresholds: np.ndarray, values: np.ndarray) -> float:
    """Area under a PCK curve, normalised to 1: trapezoid area / (thresholds[-1] - thresholds[0]).

    A curve equal to 1 everywhere gives 1.
    """
    t = np.asarray(thresholds, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    span = t[-1] - t[0]
    if span <= 0:
        raise ValueError("thresholds must be increasing and span a non-empty range")
    return float(np.trapezoid(v, t) / span)


def epe(pred_px: np.ndarray, gt_px: np.ndarray, visible: np.ndarray) -> float:
    """End-point error: mean Euclidean pixel distance over all labelled keypoints (MMPose's EPE).

    Pass SOURCE-image pixels to compare with MMPose's tables.

    Args:
        pred_px, gt_px: ``(N, K, 2)``.
        visible: ``(N, K)``.
    """
    vis = _mask(visible)
    if not vis.any():
        return float("nan")
    diff = np.asarray(pred_px, dtype=np.float64) - np.asarray(gt_px, dtype=np.float64)
    return float(np.linalg.norm(diff, axis=-1)[vis].mean())


# The pooled metrics that are one sum over crops divided by another: ``metric = sum(numerator) /
# sum(count)`` over the columns of :func:`per_crop_sums`, so resampling crops resamples the metric.
POOLED_PARTS: dict[str, tuple[str, str]] = {
    "nme": ("nme_sum", "n_normalised"),
    **{metric_key("pck", s): (f"{metric_key('pck', s)}_hits", "n_normalised") for s in DEFAULT_THRESHOLDS},
    "auc_0.2": ("auc_0.2_hits", "n_normalised"),
    "epe_px": ("epe_px_sum", "n_labelled"),
}


def per_crop_sums(
    errors: np.ndarray,
    visible: np.ndarray,
    norm_size: np.ndarray,
    pixel_errors: np.ndarray | None = None,
) -> pd.DataFrame:
    """Each crop's part of the pooled metrics (:data:`POOLED_PARTS`), one row per crop.

    Args:
        errors: ``(N, K)`` normalised errors of the final stage.
        visible: ``(N, K)``.
        norm_size: ``(N,)`` the normalisers (crops :func:`normalisable` leaves out count 0).
        pixel_errors: ``(N, K)`` Euclidean errors in source pixels, for ``epe_px``; None leaves it out.

    Returns:
        ``n_normalised`` (keypoints in NME/PCK/AUC), ``nme_sum``, ``pck_<s>_hits`` (keypoints within
        ``s``), ``auc_0.2_hits`` (the crop's hits integrated over the PCK curve, :func:`auc`'s
        trapezoid, so summing them and dividing by ``n_normalised``'s sum gives ``auc_0.2``), and with
        ``pixel_errors`` ``n_labelled`` and ``epe_px_sum``.
    """
    vis = normalisable(visible, norm_size)
    e = np.where(vis, np.asarray(errors, dtype=np.float64), np.inf)  # never within any threshold
    table = {"n_normalised": vis.sum(axis=1), "nme_sum": np.where(vis, e, 0.0).sum(axis=1)}
    for s in DEFAULT_THRESHOLDS:
        table[f"{metric_key('pck', s)}_hits"] = (e <= s).sum(axis=1)
    hits = (e[:, :, None] <= PCK_CURVE_THRESHOLDS).sum(axis=1)  # (N, S)
    span = PCK_CURVE_THRESHOLDS[-1] - PCK_CURVE_THRESHOLDS[0]
    table["auc_0.2_hits"] = np.trapezoid(hits, PCK_CURVE_THRESHOLDS, axis=1) / span
    if pixel_errors is not None:
        labelled = _mask(visible)
        table["n_labelled"] = labelled.sum(axis=1)
        table["epe_px_sum"] = np.where(labelled, np.asarray(pixel_errors, dtype=np.float64), 0.0).sum(axis=1)
    return pd.DataFrame(table)


def pooled(per_crop: pd.DataFrame, metric: str) -> float:
    """A pooled metric from :func:`per_crop_sums`'s table (NaN when no keypoint counts)."""
    numerator, count = POOLED_PARTS[metric]
    total = per_crop[count].sum()
    return float(per_crop[numerator].sum() / total) if total > 0 else float("nan")


def mmpose_auc(
    pred_px: np.ndarray,
    gt_px: np.ndarray,
    visible: np.ndarray,
    max_px: float = 30.0,
    n_thresholds: int = 20,
) -> float:
    """MMPose's ``keypoint_auc`` (the ``AUC`` of its RHD/FreiHAND tables, ``norm_factor=30``).

    Reproduces ``mmpose.evaluation.functional.keypoint_auc`` exactly:

    - pixel distances ``d[n, k] = ||pred - gt||`` (no box normalisation; pass source-image pixels);
    - thresholds ``r_i = i * max_px / n_thresholds`` for ``i = 0 .. n_thresholds - 1``
      (0, 1.5, ..., 28.5 px by default: the last threshold is NOT ``max_px``);
    - at each threshold, the accuracy of keypoint ``k`` is ``#{n : v[n,k], d[n,k] < r_i} /
      #{n : v[n,k]}`` (STRICT ``<``, so ``r_0 = 0`` always gives 0), and PCK_i is the mean of these
      accuracies over keypoints with at least one labelled instance (a per-keypoint average, not
      pooled over all keypoints; the two agree when every keypoint is labelled equally often);
    - ``AUC = (1 / n_thresholds) * sum_i PCK_i`` (a left Riemann sum, not a trapezoid).

    Args:
        pred_px, gt_px: ``(N, K, 2)`` pixels.
        visible: ``(N, K)``.

    Returns:
        float in ``[0, 1)``.
    """
    vis = _mask(visible)
    diff = np.asarray(pred_px, dtype=np.float64) - np.asarray(gt_px, dtype=np.float64)
    d = np.linalg.norm(diff, axis=-1)
    counts = vis.sum(axis=0)  # (K,)
    valid_k = counts > 0
    if not valid_k.any():
        return float("nan")
    thrs = np.array([i * max_px / n_thresholds for i in range(n_thresholds)])
    pcks = []
    for r in thrs:
        hits = ((d < r) & vis).sum(axis=0)
        pcks.append((hits[valid_k] / counts[valid_k]).mean())
    return float(np.mean(pcks))


def mmpose_pck(
    pred_px: np.ndarray,
    gt_px: np.ndarray,
    visible: np.ndarray,
    box_size_px: np.ndarray,
    threshold: float = 0.2,
) -> float:
    """MMPose's PCK (``PCKAccuracy(norm_item='bbox')``, the ``PCK`` of its hand tables).

    Reproduces ``mmpose.evaluation.functional.keypoint_pck_accuracy`` with MMPose's bbox normaliser:

    - ``e[n, k] = ||pred - gt|| / box_size_px[n]``, where ``box_size_px`` is ``max(w, h)`` of each
      sample's ANNOTATION box (not the tight keypoint box; see
      :func:`mle_hand_pipeline.evaluation.report.mmpose_box_size` for RHD and FreiHAND);
    - STRICT ``e < threshold``;
    - the accuracy of keypoint ``k`` is ``#{n : v[n,k], e[n,k] < s} / #{n : v[n,k]}`` and the PCK is
      the mean of these accuracies over the keypoints with at least one valid sample (a per-keypoint
      average, not pooled);
    - samples whose box is zero or not finite are left out (MMPose masks samples with a zero
      normaliser the same way).

    Args:
        pred_px, gt_px: ``(N, K, 2)`` pixels (source-image pixels, the units of ``box_size_px``).
        visible: ``(N, K)``.
        box_size_px: ``(N,)`` annotation box side ``max(w, h)``, same units.
        threshold: normalised distance threshold (MMPose's hand tables use 0.2).

    Returns:
        float in ``[0, 1]``; NaN when no keypoint has a valid sample (MMPose returns 0 there).
    """
    vis = normalisable(visible, box_size_px)
    counts = vis.sum(axis=0)  # (K,)
    valid_k = counts > 0
    if not valid_k.any():
        return float("nan")
    errors = normalised_errors(pred_px, gt_px, box_size_px)
    with np.errstate(invalid="ignore"):
        hits = ((errors < threshold) & vis).sum(axis=0)
    return float((hits[valid_k] / counts[valid_k]).mean())


def per_keypoint_nme(errors: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """NME of each keypoint over the crops where it is labelled.

    Returns:
        ``(K,)``; NaN for a keypoint that is never labelled.
    """
    vis = _mask(visible)
    err = np.where(vis, np.asarray(errors, dtype=np.float64), 0.0)
    count = vis.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, err.sum(axis=0) / count, np.nan)


def per_keypoint_pck(errors: np.ndarray, visible: np.ndarray, threshold: float) -> np.ndarray:
    """PCK (``e <= threshold``) of each keypoint over the crops where it is labelled.

    Returns:
        ``(K,)``; NaN for a keypoint that is never labelled.
    """
    vis = _mask(visible)
    hit = (np.asarray(errors, dtype=np.float64) <= threshold) & vis
    count = vis.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, hit.sum(axis=0) / count, np.nan)


def per_stage_pck(per_stage_errors: np.ndarray, visible: np.ndarray, threshold: float) -> np.ndarray:
    """Pooled PCK of each stage.

    Args:
        per_stage_errors: ``(T, N, K)`` normalised errors of every stage.
        visible: ``(N, K)``.

    Returns:
        ``(T,)``.
    """
    return np.array([pck(e, visible, threshold) for e in np.asarray(per_stage_errors)])


def per_stage_nme(per_stage_errors: np.ndarray, visible: np.ndarray, per_sample: bool = False) -> np.ndarray:
    """NME of each stage (see :func:`nme`). ``per_stage_errors`` is ``(T, N, K)``; returns ``(T,)``."""
    return np.array([nme(e, visible, per_sample) for e in np.asarray(per_stage_errors)])


# --------------------------------------------------------------------------------------------------
# Uncertainty
# --------------------------------------------------------------------------------------------------


def centre_slope(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray) -> float:
    """Least-squares slope of the predicted coordinates on the true ones, x and y pooled.

    ``pred``, ``gt`` ``(N, K, 2)`` in the same pixels, over the visible keypoints (with an intercept,
    so the crop centre's position does not matter). 1: predictions follow the labels; below 1: they
    regress towards the middle (what a soft-argmax over flat maps does). NaN with fewer than 2
    visible keypoints or constant labels.
    """
    vis = _mask(visible)
    p = np.asarray(pred, dtype=np.float64)[vis].ravel()
    g = np.asarray(gt, dtype=np.float64)[vis].ravel()
    if g.size < 2 or np.ptp(g) == 0:
        return float("nan")
    g_centred = g - g.mean()
    return float(np.dot(g_centred, p - p.mean()) / np.dot(g_centred, g_centred))


def hand_spread(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray) -> float:
    """Size of the predicted hands relative to the true ones: 1 is the true size.

    Per crop, the spread of a hand is the mean distance of its visible keypoints to their centroid;
    the ratio is ``sum(predicted spreads) / sum(true spreads)`` over crops with >= 2 visible keypoints
    (NaN when there are none, or every true spread is 0).
    """
    vis = _mask(visible)
    usable = vis.sum(axis=1) >= 2
    if not usable.any():
        return float("nan")

    kept = vis[usable]
    counts = kept.sum(axis=1)

    def spreads(points: np.ndarray) -> np.ndarray:
        points = np.where(kept[..., None], np.asarray(points, dtype=np.float64)[usable], 0.0)
        centroid = points.sum(axis=1, keepdims=True) / counts[:, None, None]
        return (np.linalg.norm(points - centroid, axis=-1) * kept).sum(axis=1) / counts

    true_total = spreads(gt).sum()
    return float(spreads(pred).sum() / true_total) if true_total > 0 else float("nan")


def _visible_pairs(
    errors_px: np.ndarray, sigmas_px: np.ndarray, visible: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    vis = _mask(visible)
    err = np.asarray(errors_px, dtype=np.float64)[vis]  # (M, 2)
    sig = np.asarray(sigmas_px, dtype=np.float64)[vis]  # (M, 2)
    return err, sig


def uncertainty_stats(errors_px: np.ndarray, sigmas_px: np.ndarray, visible: np.ndarray) -> dict[str, float]:
    """How well the predicted scales ``sigma`` track the actual errors.

    Args:
        errors_px: ``(N, K, 2)`` SIGNED per-coordinate errors ``pred - gt``.
        sigmas_px: ``(N, K, 2)`` predicted per-coordinate scales, same units as ``errors_px``.
        visible: ``(N, K)``.

    Returns:
        dict with

        - ``sigma_error_spearman`` / ``sigma_error_pearson``: rank / linear correlation, over the
          labelled keypoints, between ``||sigma[n,k]||`` and ``||err[n,k]||`` (NaN if either is
          constant or fewer than 2 keypoints are labelled);
        - ``within_1sigma`` / ``within_2sigma``: share of labelled COORDINATES with
          ``|err| <= 1 * sigma`` / ``<= 2 * sigma`` (inclusive), x and y counted separately;
        - ``error_sigma_rms``: RMS over labelled coordinates of ``err / sigma``; 1 when ``sigma`` is a
          calibrated RMS error, above 1 when the model is overconfident;
        - ``mean_sigma_px``: mean predicted per-coordinate scale; ``n_keypoints``: labelled count.

    Interpreting the shares: this library's models report ``sigma`` as the predicted RMS error (the
    raw scale times the learned density's RMS, ``models.pose_net.error_sigmas``), but the error's
    SHAPE is the learned flow's, so the ideal shares depend on it: a Gaussian gives 0.683 / 0.954
    (:data:`GAUSSIAN_WITHIN`), a Laplace with the same RMS (scale ``b = sigma / sqrt 2``) gives
    0.757 / 0.941 (:data:`LAPLACE_WITHIN`). The correlations (does a larger sigma mean a larger
    error?) are the shape-free check.
    """
    err, sig = _visible_pairs(errors_px, sigmas_px, visible)
    out: dict[str, float] = {"n_keypoints": float(err.shape[0])}
    if err.shape[0] == 0:
        out.update(
            sigma_error_spearman=float("nan"),
            sigma_error_pearson=float("nan"),
            within_1sigma=float("nan"),
            within_2sigma=float("nan"),
            error_sigma_rms=float("nan"),
            mean_sigma_px=float("nan"),
        )
        return out
    abs_err = np.abs(err)
    out["error_sigma_rms"] = float(np.sqrt(np.mean((err / sig) ** 2)))
    out["within_1sigma"] = float((abs_err <= sig).mean())
    out["within_2sigma"] = float((abs_err <= 2.0 * sig).mean())
    out["mean_sigma_px"] = float(sig.mean())
    s_norm = np.linalg.norm(sig, axis=-1)
    e_norm = np.linalg.norm(err, axis=-1)
    if err.shape[0] < 2 or np.ptp(s_norm) == 0 or np.ptp(e_norm) == 0:
        out["sigma_error_spearman"] = float("nan")
        out["sigma_error_pearson"] = float("nan")
    else:
        from scipy import stats

        out["sigma_error_spearman"] = float(stats.spearmanr(s_norm, e_norm).statistic)
        out["sigma_error_pearson"] = float(np.corrcoef(s_norm, e_norm)[0, 1])
    return out


def calibration_curve(
    errors_px: np.ndarray, sigmas_px: np.ndarray, visible: np.ndarray, n_bins: int = 10
) -> dict[str, np.ndarray]:
    """Reliability curve of the predicted scales, per coordinate.

    Every labelled keypoint contributes two samples, ``(sigma_x, err_x)`` and ``(sigma_y, err_y)``.
    They are split into ``n_bins`` quantile bins of ``sigma`` (equal counts; fewer bins if sigma
    has ties), and per bin we report the mean predicted sigma, the RMS of the observed error and the
    mean of ``|error|``. For a sigma that is the predicted RMS error, the ideal is RMS = sigma in
    every bin; mean|err| is then sqrt(2/pi) sigma ~= 0.798 sigma for a Gaussian and
    sigma / sqrt(2) ~= 0.707 sigma for a Laplace.

    Args:
        errors_px: ``(N, K, 2)`` signed errors ``pred - gt``.
        sigmas_px: ``(N, K, 2)`` predicted scales, same units.
        visible: ``(N, K)``.
        n_bins: number of quantile bins.

    Returns:
        dict of ``(B,)`` arrays ``sigma_mean``, ``rms_error``, ``mean_abs_error`` and ``count``
        (``B <= n_bins``; empty bins are dropped).
    """
    err, sig = _visible_pairs(errors_px, sigmas_px, visible)
    e = np.abs(err).ravel()
    s = sig.ravel()
    if s.size == 0:
        empty = np.zeros(0)
        return {
            "sigma_mean": empty,
            "rms_error": empty,
            "mean_abs_error": empty,
            "count": np.zeros(0, dtype=int),
        }
    edges = np.unique(np.quantile(s, np.linspace(0.0, 1.0, n_bins + 1)))
    if edges.size == 1:
        edges = np.array([edges[0], edges[0]])
    # Bin i holds edges[i] <= s < edges[i+1]; the top edge is inclusive.
    idx = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, edges.size - 2)
    sigma_mean, rms, mae, count = [], [], [], []
    for b in range(edges.size - 1):
        sel = idx == b
        if not sel.any():
            continue
        sigma_mean.append(s[sel].mean())
        rms.append(np.sqrt(np.mean(e[sel] ** 2)))
        mae.append(e[sel].mean())
        count.append(int(sel.sum()))
    return {
        "sigma_mean": np.array(sigma_mean),
        "rms_error": np.array(rms),
        "mean_abs_error": np.array(mae),
        "count": np.array(count, dtype=int),
    }


# --------------------------------------------------------------------------------------------------
# Everything at once
# --------------------------------------------------------------------------------------------------


def _as_stages(pred_stages: np.ndarray) -> np.ndarray:
    p = np.asarray(pred_stages, dtype=np.float64)
    if p.ndim == 3:
        p = p[None]
    if p.ndim != 4 or p.shape[-1] != 2:
        raise ValueError(f"pred_stages must be (T, N, K, 2) or (N, K, 2), got {p.shape}")
    return p


def stage_errors(pred_stages: np.ndarray, gt: np.ndarray, norm_size: np.ndarray) -> np.ndarray:
    """Normalised errors of every stage: ``(T, N, K, 2)`` (or ``(N, K, 2)``) -> ``(T, N, K)``."""
    return np.stack([normalised_errors(p, gt, norm_size) for p in _as_stages(pred_stages)])


def evaluate(
    pred_stages: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray,
    norm_size: np.ndarray,
    pred_src: np.ndarray | None = None,
    gt_src: np.ndarray | None = None,
    sigmas: np.ndarray | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    mmpose_box_px: np.ndarray | None = None,
) -> dict[str, float]:
    """All scalar metrics, under stable MLflow-safe names.

    Args:
        pred_stages: ``(T, N, K, 2)`` predictions of every stage in CROP pixels (the last stage is the
            model's output); ``(N, K, 2)`` is taken as one stage.
        gt: ``(N, K, 2)`` ground truth in crop pixels.
        visible: ``(N, K)``.
        norm_size: ``(N,)`` ``max(w, h)`` of the ground-truth box of the visible keypoints, in crop
            pixels (:func:`hand_box_size` of ``gt``).
        pred_src, gt_src: ``(N, K, 2)`` final-stage prediction and ground truth in SOURCE-image
            pixels, for ``epe_px`` and ``mmpose_auc`` (omitted when either is None).
        sigmas: ``(N, K, 2)`` final-stage predicted scales in crop pixels, or None.
        thresholds: PCK thresholds reported as ``pck_{s}``.
        mmpose_box_px: ``(N,)`` MMPose's annotation-box side in SOURCE pixels, for ``mmpose_pck_0.2``
            (with ``pred_src``/``gt_src``; omitted when None).

    Returns:
        Flat ``dict[str, float]``:

        - ``nme`` (pooled, final stage), ``nme_per_sample`` (paper eq. (9));
        - ``pck_0.05``, ``pck_0.1``, ``pck_0.15``, ``pck_0.2`` (one per ``thresholds`` entry);
        - ``auc_0.2``: normalised area under the PCK curve over ``[0, 0.2]`` (41 thresholds);
        - ``n_zero_box``: crops left out of the normalised metrics because ``norm_size`` is zero or
          not finite (0 on any usable test set);
        - ``epe_px``, ``mmpose_auc`` (source pixels; when ``pred_src``/``gt_src`` are given);
        - ``mmpose_pck_0.2`` (:func:`mmpose_pck`; when ``mmpose_box_px`` is given too);
        - ``stage{t}_nme``, ``stage{t}_pck_0.2`` for ``t = 1 .. T``;
        - ``centre_slope``, ``hand_spread`` (final stage) and ``stage{t}_centre_slope``,
          ``stage{t}_hand_spread``: do the predictions shrink towards the middle
          (:func:`centre_slope`, :func:`hand_spread`; both 1 for exact predictions);
        - when ``sigmas`` is given: ``sigma_error_spearman``, ``sigma_error_pearson``,
          ``within_1sigma``, ``within_2sigma``, ``error_sigma_rms``, ``mean_sigma_px``.
    """
    stages = _as_stages(pred_stages)
    errs = stage_errors(stages, gt, norm_size)
    final = errs[-1]
    all_visible = visible
    visible = normalisable(all_visible, norm_size)
    out: dict[str, float] = {
        "nme": nme(final, visible),
        "nme_per_sample": nme(final, visible, per_sample=True),
    }
    for s in thresholds:
        out[metric_key("pck", s)] = pck(final, visible, s)
    out["auc_0.2"] = auc(*pck_curve(final, visible, PCK_CURVE_THRESHOLDS))
    out["n_zero_box"] = float(len(zero_box_crops(all_visible, norm_size)))
    if pred_src is not None and gt_src is not None:
        # Pixel metrics need no normaliser: every labelled keypoint counts.
        out["epe_px"] = epe(pred_src, gt_src, all_visible)
        out["mmpose_auc"] = mmpose_auc(pred_src, gt_src, all_visible)
        if mmpose_box_px is not None:
            out["mmpose_pck_0.2"] = mmpose_pck(pred_src, gt_src, all_visible, mmpose_box_px, 0.2)
    out["centre_slope"] = centre_slope(stages[-1], gt, all_visible)
    out["hand_spread"] = hand_spread(stages[-1], gt, all_visible)
    for t, e in enumerate(errs, start=1):
        out[f"stage{t}_nme"] = nme(e, visible)
        out[f"stage{t}_pck_0.2"] = pck(e, visible, 0.2)
        out[f"stage{t}_centre_slope"] = centre_slope(stages[t - 1], gt, all_visible)
        out[f"stage{t}_hand_spread"] = hand_spread(stages[t - 1], gt, all_visible)
    if sigmas is not None:
        stats = uncertainty_stats(stages[-1] - np.asarray(gt, dtype=np.float64), sigmas, all_visible)
        out.update({k: v for k, v in stats.items() if k != "n_keypoints"})
    return out


def evaluation_tables(
    pred_stages: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray,
    norm_size: np.ndarray,
    threshold: float = 0.2,
    keypoint_names: Sequence[str] = KEYPOINT_NAMES,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-keypoint and per-stage tables.

    Returns:
        ``(per_keypoint, per_stage)``:

        - ``per_keypoint``: one row per keypoint (final stage), columns ``keypoint`` (index),
          ``name``, ``nme``, ``pck_0.2``, ``n_visible`` (``nme``/``pck`` NaN if never visible);
        - ``per_stage``: one row per stage, columns ``stage`` (1-based), ``nme``, ``pck_0.2``,
          ``auc_0.2`` (normalised AUC of the PCK curve over [0, 0.2]).

        The ``pck_0.2`` column name follows ``threshold`` (:func:`metric_key`). Crops whose
    ``norm_size`` is zero or not finite are left out (:func:`normalisable`).
    """
    errs = stage_errors(pred_stages, gt, norm_size)
    vis = normalisable(visible, norm_size)
    pck_col = metric_key("pck", threshold)
    per_keypoint = pd.DataFrame(
        {
            "keypoint": np.arange(errs.shape[-1]),
            "name": list(keypoint_names)[: errs.shape[-1]],
            "nme": per_keypoint_nme(errs[-1], vis),
            pck_col: per_keypoint_pck(errs[-1], vis, threshold),
            "n_visible": vis.sum(axis=0).astype(int),
        }
    )
    per_stage = pd.DataFrame(
        {
            "stage": np.arange(1, errs.shape[0] + 1),
            "nme": per_stage_nme(errs, vis),
            pck_col: per_stage_pck(errs, vis, threshold),
            "auc_0.2": [auc(*pck_curve(e, vis, PCK_CURVE_THRESHOLDS)) for e in errs],
        }
    )
    return per_keypoint, per_stage
