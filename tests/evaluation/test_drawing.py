"""The skeleton drawn on images with Pillow (predict's overlays, the qualitative grids)."""

from __future__ import annotations

import numpy as np
from helpers import open_hand

from mle_hand_pipeline.evaluation import drawing as D
from mle_hand_pipeline.keypoints import FINGER_COLOURS, NUM_KEYPOINTS


def test_draw_skeleton_changes_pixels_at_keypoints():
    img = np.zeros((64, 64, 3), np.uint8)
    kp = open_hand()
    vis = np.ones(NUM_KEYPOINTS, bool)
    vis[20] = False
    out = D.draw_skeleton(img, kp, vis, radius=2)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.shares_memory(out, img) and img.sum() == 0
    for k in range(NUM_KEYPOINTS - 1):
        x, y = np.round(kp[k]).astype(int)
        assert out[y, x].any(), k
    x, y = np.round(kp[20]).astype(int)
    assert not out[y, x].any()  # unlabelled keypoint skipped, and so are its bones
    # thumb tip (keypoint 4) gets the thumb colour
    x, y = np.round(kp[4]).astype(int)
    assert tuple(out[y, x]) == FINGER_COLOURS["thumb"]
    # fixed colour mode
    out2 = D.draw_skeleton(img, kp, None, colour_mode=(0, 0, 255), radius=2)
    x, y = np.round(kp[8]).astype(int)
    assert tuple(out2[y, x]) == (0, 0, 255)


def test_draw_skeleton_hollow_invisible():
    img = np.zeros((64, 64, 3), np.uint8)
    kp = open_hand()
    vis = np.zeros(NUM_KEYPOINTS, bool)
    out = D.draw_skeleton(img, kp, vis, radius=4, show_invisible=True)
    x, y = np.round(kp[12]).astype(int)
    assert not out[y, x].any()  # hollow: the centre stays untouched
    assert out[y - 4 : y + 5, x - 4 : x + 5].any()
