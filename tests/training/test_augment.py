"""Keypoints must follow the image through the batched augmentation (rotation, scale, shift, flip).

Each test image is black with one bright Gaussian dot at a known keypoint; after warping, the dot's
intensity centroid must sit where the warped keypoint says, in output pixels. Crops are 96 px and the
output 64 px, so the crop -> input resize runs at a ratio other than 1 as well.
"""

import math

import pytest
import torch

from mle_hand_pipeline.training.augment import AugmentSettings, random_affines, warp_batch

CROP, OUT = 96, 64


def _dots(points: torch.Tensor, size: int = CROP, sigma: float = 1.5) -> torch.Tensor:
    """(N, 3, size, size) images, image i black but for a Gaussian dot at points[i] (crop pixels)."""
    centres = torch.arange(size, dtype=torch.float64) + 0.5  # pixel i covers [i, i + 1)
    dx = centres[None, None, :] - points[:, 0, None, None]
    dy = centres[None, :, None] - points[:, 1, None, None]
    image = torch.exp(-(dx**2 + dy**2) / (2 * sigma**2)).float()
    return image[:, None].expand(-1, 3, -1, -1).contiguous()


def _centroids(images: torch.Tensor) -> torch.Tensor:
    """(N, 2) intensity centroids of (N, 3, S, S) images, in pixels of the same convention."""
    weights = images[:, 0].double()
    centres = torch.arange(images.shape[-1], dtype=torch.float64) + 0.5
    total = weights.sum(dim=(1, 2))
    x = (weights.sum(dim=1) * centres).sum(dim=1) / total
    y = (weights.sum(dim=2) * centres).sum(dim=1) / total
    return torch.stack([x, y], dim=1)


def _affine(angle_deg=0.0, scale=1.0, shift=(0.0, 0.0), flip=False) -> torch.Tensor:
    """The (2, 3) affine (``g`` coordinates) random_affines builds: flip, rotate, scale, then shift."""
    angle = math.radians(angle_deg)
    cos, sin, sign = math.cos(angle) * scale, math.sin(angle) * scale, -1.0 if flip else 1.0
    return torch.tensor([[cos * sign, -sin, 2 * shift[0]], [sin * sign, cos, 2 * shift[1]]])


# Keypoints well inside the crop, so that none leaves the output under the transforms below.
POINTS = torch.tensor([[48.0, 48.0], [30.5, 41.0], [62.0, 35.25], [40.0, 66.0], [57.3, 60.1]])

TRANSFORMS = {
    "identity": _affine(),
    "rotate 30": _affine(angle_deg=30),
    "rotate -75": _affine(angle_deg=-75),
    "zoom in": _affine(scale=1.3),
    "zoom out": _affine(scale=0.7),
    "shift": _affine(shift=(0.1, -0.08)),
    "flip": _affine(flip=True),
    "all": _affine(angle_deg=140, scale=1.15, shift=(-0.06, 0.09), flip=True),
}


def _warp(points: torch.Tensor, forward: torch.Tensor | None):
    """Warp one dot image per point; returns (dot centroids, warped keypoints) in output pixels, visible."""
    n = len(points)
    images, keypoints = _dots(points), points[:, None, :]  # one keypoint (K = 1) per image
    if forward is not None:
        forward = forward.expand(n, 2, 3) if forward.dim() == 2 else forward
    warped, normalised, visible = warp_batch(images, keypoints, torch.ones(n, 1, dtype=bool), forward, OUT)
    assert warped.shape == (n, 3, OUT, OUT) and normalised.shape == (n, 1, 2)
    return _centroids(warped), ((normalised[:, 0] + 0.5) * OUT).double(), visible[:, 0]


def test_plain_resize_scales_keypoints_with_the_image():
    dots, keypoints, visible = _warp(POINTS, None)
    torch.testing.assert_close(keypoints, POINTS.double() * OUT / CROP)
    torch.testing.assert_close(dots, keypoints, atol=0.1, rtol=0)
    assert visible.all()


@pytest.mark.parametrize("name", TRANSFORMS)
def test_keypoints_land_on_their_dots(name):
    dots, keypoints, visible = _warp(POINTS, TRANSFORMS[name])
    torch.testing.assert_close(dots, keypoints, atol=0.15, rtol=0)
    assert visible.all()
    if name != "identity":  # the transform really moved the points (else the test proves nothing)
        assert (keypoints - POINTS.double() * OUT / CROP).abs().max() > 2


def test_flip_mirrors_left_right_zoom_and_rotation_act_about_the_centre_shift_moves():
    centre = OUT / 2
    _, plain, _ = _warp(POINTS, _affine())
    _, flipped, _ = _warp(POINTS, _affine(flip=True))
    close = {"atol": 1e-4, "rtol": 0}  # float32 arithmetic
    torch.testing.assert_close(flipped[:, 0], 2 * centre - plain[:, 0], **close)
    torch.testing.assert_close(flipped[:, 1], plain[:, 1], **close)
    _, zoomed, _ = _warp(POINTS, _affine(scale=1.3))
    torch.testing.assert_close(zoomed - centre, 1.3 * (plain - centre), **close)
    _, rotated, _ = _warp(POINTS, _affine(angle_deg=50))
    torch.testing.assert_close((rotated - centre).norm(dim=1), (plain - centre).norm(dim=1), **close)
    _, shifted, _ = _warp(POINTS, _affine(shift=(0.1, -0.05)))
    offset = torch.tensor([0.1, -0.05], dtype=torch.float64) * OUT
    torch.testing.assert_close(shifted - plain, offset.expand(5, 2), **close)


def test_random_affines_follow_their_settings_and_the_dots_follow_them():
    settings = AugmentSettings(rotation=180, rotation_prob=1.0, scale=(0.8, 1.2), shift=0.05, flip_prob=0.5)
    generator = torch.Generator().manual_seed(0)
    forward = random_affines(64, settings, generator, "cpu")
    linear = forward[:, :, :2]
    scale = linear.det().abs().sqrt()
    assert (scale >= 0.8 - 1e-5).all() and (scale <= 1.2 + 1e-5).all()
    flipped = linear.det() < 0
    assert 16 < int(flipped.sum()) < 48  # about half are mirrored
    assert (forward[:, :, 2].abs() <= 2 * 0.05 + 1e-6).all()  # shift is a fraction of the side, g = 2u
    unflipped_only = random_affines(16, AugmentSettings(flip_prob=0.0), generator, "cpu")
    assert (unflipped_only[:, :, :2].det() > 0).all()
    points = POINTS[torch.arange(64) % len(POINTS)]
    # Small dots near the centre stay inside the output for every drawn transform.
    inner = (points - CROP / 2) * 0.5 + CROP / 2
    dots, keypoints, visible = _warp(inner, forward)
    assert visible.all()
    torch.testing.assert_close(dots, keypoints, atol=0.15, rtol=0)


def test_visibility_clears_for_keypoints_moved_outside_and_stays_cleared():
    images = _dots(POINTS)
    keypoints = POINTS[None].expand(2, -1, -1)  # two images with the five keypoints each
    visible = torch.tensor([[True, True, True, True, False]] * 2)
    shift_right = torch.stack([_affine(), _affine(shift=(0.42, 0.0))])  # 0.42 of the side to the right
    _, normalised, after = warp_batch(images[:2], keypoints, visible, shift_right, OUT)
    assert torch.equal(after[0], visible[0])  # nothing moved, nothing changes; invisible stays invisible
    right_of_edge = normalised[1, :, 0] >= 0.5
    assert right_of_edge.any() and not right_of_edge.all()
    assert torch.equal(after[1], visible[1] & ~right_of_edge)
