"""The renderer: z-buffered capsules and palms, labels, visibility, backgrounds, compositing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mle_hand_pipeline.synthetic import render
from mle_hand_pipeline.synthetic.hand_model import intrinsics, place_hand, random_rotation, sample_pose

SIZE = 160
K = intrinsics(300.0, SIZE / 2, SIZE / 2)
FRONT_LIGHT = np.array([0.0, 0.0, -1.0])
SKIN = np.array([220.0, 170.0, 140.0])


def _canvas(supersample: int = 2) -> render.Canvas:
    return render.Canvas.for_camera(SIZE, K, supersample=supersample, light=FRONT_LIGHT, ambient=0.3)


def _hand(seed: int, *, is_left: bool = False, size_px: float = 90.0, centre=(80.0, 80.0)) -> render.Hand3D:
    rng = np.random.default_rng(seed)
    pose = sample_pose(rng, is_left=is_left)
    # A palm or back view, fingers up: few self-occlusions, so the tests below are about the renderer.
    rotation = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
    translation = place_hand(pose.joints, rotation, K, centre_px=centre, size_px=size_px)
    return render.Hand3D(
        joints=pose.joints @ rotation.T + translation,
        radii=pose.radii,
        outline=pose.outline @ rotation.T + translation,
        outline_radii=pose.outline_radii,
        is_left=is_left,
        skin=SKIN,
        arm=np.empty((0, 3)),
        arm_radii=np.empty(0),
        arm_colour=SKIN,
    )


def test_supersampled_intrinsics_keep_pixel_centres():
    canvas = _canvas(supersample=2)
    point = np.array([[0.05, -0.02, 0.6]])
    fine = canvas.to_pixels(point)[0]
    coarse = (point @ K.T)[0, :2] / 0.6
    # The centre of a 2x2 block of fine pixels is the coarse pixel centre.
    np.testing.assert_allclose((fine + 0.5) / 2 - 0.5, coarse)


def test_capsule_labels_depth_and_shading():
    canvas = _canvas()
    p0, p1 = np.array([-0.05, 0.0, 0.5]), np.array([0.05, 0.0, 0.5])
    canvas.capsule(p0, p1, 0.01, 0.01, SKIN, 7)
    centre = canvas.to_pixels(np.array([[0.0, 0.0, 0.5]]))[0].round().astype(int)
    x, y = centre
    assert canvas.label[y, x] == 7
    # The visible surface bulges towards the camera by the radius.
    assert canvas.depth[y, x] == pytest.approx(0.49, abs=1e-3)
    radius_px = canvas.K[0, 0] * 0.01 / 0.5
    assert canvas.label[y + int(radius_px) + 2, x] == 0
    # Lit from the camera: the middle of the tube is brighter than its rim.
    assert canvas.colour[y, x].sum() > canvas.colour[y + int(radius_px) - 1, x].sum() + 30
    assert np.all(canvas.colour[y, x] <= 255.0 * 1.1)


def test_nearer_part_wins_whatever_the_drawing_order():
    near = (np.array([-0.05, 0.0, 0.5]), np.array([0.05, 0.0, 0.5]), 3)
    far = (np.array([0.0, -0.05, 0.56]), np.array([0.0, 0.05, 0.56]), 9)
    labels = []
    for order in ((near, far), (far, near)):
        canvas = _canvas()
        for a, b, label in order:
            canvas.capsule(a, b, 0.01, 0.01, SKIN, label)
        labels.append(canvas.label.copy())
        x, y = canvas.to_pixels(np.array([[0.0, 0.0, 0.5]]))[0].round().astype(int)
        assert canvas.label[y, x] == 3
    np.testing.assert_array_equal(labels[0], labels[1])
    assert {3, 9} <= set(np.unique(labels[0]))


def test_palm_surface_is_filled_and_labelled():
    hand = _hand(0)
    canvas = _canvas()
    canvas.surface(hand.outline, SKIN, 33, thickness=0.009)
    centre = canvas.to_pixels(hand.outline.mean(axis=0)[None])[0].round().astype(int)
    assert canvas.label[centre[1], centre[0]] == 33
    assert canvas.depth[centre[1], centre[0]] < hand.outline[:, 2].mean()
    assert (canvas.label == 33).sum() > 500


@pytest.mark.parametrize("is_left", [False, True])
def test_draw_hand_uses_its_label_range(is_left):
    hand = _hand(1, is_left=is_left)
    canvas = _canvas()
    render.draw_hand(canvas, hand)
    lo, hi = render.hand_labels(is_left)
    labels = set(np.unique(canvas.label)) - {0}
    assert labels <= set(range(lo, hi + 1))
    assert hi in labels  # the palm
    assert len(labels) >= 8  # palm and many finger parts


def test_visibility_of_an_unoccluded_flat_hand():
    hand = _hand(2)
    canvas = _canvas()
    render.draw_hand(canvas, hand)
    vis = render.visibility(canvas, hand)
    assert vis.shape == (21,) and vis.dtype == bool
    # Palm view, fingers up and in frame: the wrist and knuckles are seen.
    assert vis[[0, 5, 9, 13, 17]].all()
    assert vis.sum() >= 12


def test_occluder_and_frame_hide_keypoints():
    hand = _hand(2)
    canvas = _canvas()
    render.draw_hand(canvas, hand)
    before = render.visibility(canvas, hand)
    uv = (hand.joints @ K.T)[:, :2] / hand.joints[:, 2:3]
    rng = np.random.default_rng(0)
    render.draw_occluder(canvas, rng, uv[0], 12.0, float(hand.joints[:, 2].min()) - 0.05)
    after = render.visibility(canvas, hand)
    assert before[0] and not after[0]
    assert np.all(after <= before)

    # Half of a hand beyond the right border: those keypoints are not visible.
    shifted = _hand(2, centre=(SIZE - 5.0, 80.0))
    canvas = _canvas()
    render.draw_hand(canvas, shifted)
    vis = render.visibility(canvas, shifted)
    uv = (shifted.joints @ K.T)[:, :2] / shifted.joints[:, 2:3]
    outside = (uv[:, 0] > SIZE - 0.5) | (uv[:, 0] < -0.5)
    assert outside.any()
    assert not vis[outside].any()


def test_other_hand_occludes():
    back = _hand(3, size_px=80.0)
    front = _hand(4, is_left=True, size_px=80.0)
    # Slide the left hand along the viewing rays to 70 % of its distance: same pixels, much nearer.
    front = dataclasses.replace(
        front,
        joints=front.joints * 0.7,
        outline=front.outline * 0.7,
        radii=front.radii * 0.7,
        outline_radii=front.outline_radii * 0.7,
    )
    alone = _canvas()
    render.draw_hand(alone, back)
    canvas = _canvas()
    render.draw_hand(canvas, back)
    render.draw_hand(canvas, front)
    seen_alone = render.visibility(alone, back)
    seen = render.visibility(canvas, back)
    assert np.all(seen <= seen_alone)
    assert seen.sum() <= seen_alone.sum() - 8
    assert render.visibility(canvas, front).sum() >= 12


def test_downsample_and_composite():
    canvas = _canvas()
    background = np.full((SIZE, SIZE, 3), 40, dtype=np.uint8)
    premultiplied, alpha = render.downsample(canvas)
    np.testing.assert_array_equal(render.composite(premultiplied, alpha, background), background)
    render.draw_hand(canvas, _hand(5))
    premultiplied, alpha = render.downsample(canvas)
    assert premultiplied.shape == (SIZE, SIZE, 3) and alpha.shape == (SIZE, SIZE)
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0
    assert 0 < (alpha == 1.0).mean() < 0.6
    assert ((alpha > 0) & (alpha < 1)).any()  # anti-aliased edges
    image = render.composite(premultiplied, alpha, background)
    assert image.dtype == np.uint8 and image.shape == (SIZE, SIZE, 3)
    label, depth = render.sample_buffers(canvas)
    assert label.shape == (SIZE, SIZE) and label.dtype == np.uint8
    assert np.isfinite(depth[label > 0]).all()


@pytest.mark.parametrize("kind", ["texture", "gradient", "stripes", "clutter"])
def test_backgrounds(kind):
    a = render.random_background(np.random.default_rng(1), 64, kind=kind)
    b = render.random_background(np.random.default_rng(1), 64, kind=kind)
    c = render.random_background(np.random.default_rng(2), 64, kind=kind)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_green_screen_is_green():
    for seed in range(10):
        img = render.green_screen(np.random.default_rng(seed), 64).astype(float)
        assert img[..., 1].mean() > img[..., 0].mean() + 40
        assert img[..., 1].mean() > img[..., 2].mean() + 40


def test_colour_treatment_changes_colours_only():
    img = render.random_background(np.random.default_rng(0), 64, kind="texture")
    out = render.colour_treatment(np.random.default_rng(1), img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img).mean() > 2


def test_skin_tones_span_light_to_dark():
    tones = np.stack([render.sample_skin(np.random.default_rng(s)) for s in range(200)])
    brightness = tones.mean(axis=1)
    assert brightness.min() < 80 and brightness.max() > 190
    assert np.all(tones[:, 0] >= tones[:, 2])  # skin is red-dominant


def test_random_rotation_views_are_not_mostly_edge_on():
    normals = np.stack([random_rotation(np.random.default_rng(s))[:, 2] for s in range(300)])
    # |z| of the palm normal in the camera frame: near 1 is a palm/back view, near 0 edge-on.
    assert np.mean(np.abs(normals[:, 2]) > 0.5) > 0.5
