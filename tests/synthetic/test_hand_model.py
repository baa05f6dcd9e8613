"""The kinematic hand: anatomy, joint limits, handedness, rotation, placement and projection."""

from __future__ import annotations

import numpy as np
import pytest

from mle_hand_pipeline.keypoints import FINGER_KEYPOINTS, FINGERS, NUM_KEYPOINTS, SKELETON
from mle_hand_pipeline.synthetic.hand_model import (
    BONE_LENGTHS,
    SCALE_RANGE,
    intrinsics,
    place_hand,
    project,
    random_rotation,
    sample_pose,
)

SEEDS = range(60)


def _chirality(joints: np.ndarray) -> float:
    """Sign of det[index MCP, pinky MCP, thumb CMC] around the wrist: + right hand, - left hand.

    It does not depend on the finger pose and flips under mirroring, not under rotation.
    """
    w = joints[0]
    return float(np.linalg.det(np.stack([joints[5] - w, joints[17] - w, joints[1] - w])))


@pytest.mark.parametrize("seed", SEEDS)
def test_pose_is_finite_and_shaped(seed):
    pose = sample_pose(np.random.default_rng(seed))
    assert pose.joints.shape == (NUM_KEYPOINTS, 3)
    assert pose.radii.shape == (NUM_KEYPOINTS,)
    assert pose.outline.shape[1] == 3
    assert pose.outline_radii.shape == (len(pose.outline),)
    assert np.all(np.isfinite(pose.joints))
    assert np.all(pose.radii > 0.004) and np.all(pose.radii < 0.03)


@pytest.mark.parametrize("seed", SEEDS)
def test_bone_lengths_are_human(seed):
    joints = sample_pose(np.random.default_rng(seed)).joints
    # Palm: wrist to each finger knuckle, 7-10.5 cm for hands between child-size and large.
    for finger in FINGERS[1:]:
        palm = np.linalg.norm(joints[FINGER_KEYPOINTS[finger][0]] - joints[0])
        assert 0.065 < palm < 0.105, (finger, palm)
    lo, hi = SCALE_RANGE
    for finger in FINGERS:
        idx = FINGER_KEYPOINTS[finger]
        for k in range(3):
            length = np.linalg.norm(joints[idx[k + 1]] - joints[idx[k]])
            nominal = BONE_LENGTHS[finger][k]
            assert lo * 0.95 * nominal - 1e-9 <= length <= hi * 1.05 * nominal + 1e-9, (finger, k, length)
    # Every bone of the skeleton: between 1.5 and 10.5 cm.
    lengths = np.array([np.linalg.norm(joints[a] - joints[b]) for a, b in SKELETON])
    assert np.all((lengths > 0.015) & (lengths < 0.105))


@pytest.mark.parametrize("seed", SEEDS)
def test_joint_limits(seed):
    joints = sample_pose(np.random.default_rng(seed)).joints
    palmar = np.array([0.0, 0.0, 1.0])
    for finger in FINGERS[1:]:
        idx = FINGER_KEYPOINTS[finger]
        segments = [joints[idx[k + 1]] - joints[idx[k]] for k in range(3)]
        # MCP: angle to the palm plane between -15 (hyperextension) and 90 degrees of flexion.
        mcp = np.degrees(np.arcsin(segments[0] @ palmar / np.linalg.norm(segments[0])))
        assert -15.5 <= mcp <= 90.5, (finger, mcp)
        # PIP <= 105 and DIP <= 80 degrees between consecutive phalanges, never bent backwards.
        for k, limit in ((1, 105.5), (2, 80.5)):
            a, b = segments[k - 1], segments[k]
            angle = np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1)))
            assert angle <= limit, (finger, k, angle)
            # Hinge axis: the proximal phalanx's in-palm direction x the palm normal.
            hinge = np.cross(segments[0] * [1.0, 1.0, 0.0], palmar)
            assert np.cross(a, b) @ hinge >= -1e-12, "flexed away from the palm"


def test_poses_vary():
    tips = np.stack([sample_pose(np.random.default_rng(s)).joints[[4, 8, 12, 16, 20]] for s in SEEDS])
    # Fingertips move by centimetres between poses: fists and open hands both occur.
    assert tips.std(axis=0).mean() > 0.01
    curl = np.linalg.norm(tips[:, 2] - np.zeros(3), axis=-1)  # middle tip distance to the wrist
    assert curl.min() < 0.11 < 0.15 < curl.max()


@pytest.mark.parametrize("seed", range(20))
def test_left_hand_is_the_mirror_image(seed):
    right = sample_pose(np.random.default_rng(seed), is_left=False)
    left = sample_pose(np.random.default_rng(seed), is_left=True)
    np.testing.assert_allclose(left.joints, right.joints * np.array([-1.0, 1.0, 1.0]))
    rotation = random_rotation(np.random.default_rng(seed + 1000))
    assert _chirality(right.joints @ rotation.T) > 0
    assert _chirality(left.joints @ rotation.T) < 0


@pytest.mark.parametrize("seed", range(20))
def test_random_rotation_is_proper(seed):
    rotation = random_rotation(np.random.default_rng(seed))
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)


def test_project_matches_pinhole():
    K = intrinsics(300.0, 160.0, 150.0)
    xyz = np.array([[0.0, 0.0, 1.0], [0.1, -0.2, 0.5]])
    np.testing.assert_allclose(project(xyz, K), [[160.0, 150.0], [160.0 + 60.0, 150.0 - 120.0]])
    assert K[0, 0] == K[1, 1]


@pytest.mark.parametrize("seed", range(30))
def test_place_hand_hits_centre_and_size(seed):
    rng = np.random.default_rng(seed)
    joints = sample_pose(rng).joints
    rotation = random_rotation(rng)
    K = intrinsics(500.0, 112.0, 112.0)
    translation = place_hand(joints, rotation, K, centre_px=(100.0, 120.0), size_px=110.0)
    xyz = joints @ rotation.T + translation
    assert np.all(xyz[:, 2] > 0.09)
    uv = project(xyz, K)
    size = np.max(uv.max(axis=0) - uv.min(axis=0))
    centre = 0.5 * (uv.max(axis=0) + uv.min(axis=0))
    # Perspective makes the one-shot depth estimate approximate, not exact.
    assert 0.75 * 110 < size < 1.35 * 110
    assert np.all(np.abs(centre - [100.0, 120.0]) < 20)
