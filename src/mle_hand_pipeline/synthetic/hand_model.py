"""A 3D kinematic hand: bone lengths, joint-limited random poses, placement and projection.

Conventions
-----------
*Hand-local frame* (metres, right hand): origin at the wrist, ``+x`` towards the thumb (radial),
``+y`` from the wrist towards the fingers (distal), ``+z = x × y`` out of the palm (palmar). Finger
flexion turns a finger towards ``+z``. A left hand is the mirror image: its local ``x`` is negated
*before* the rigid rotation, so it is a proper left hand, not a rotated right hand.

*Camera frame* (metres): ``x`` right, ``y`` down, ``z`` forward (OpenCV / FreiHAND / RHD). Pixels are
``uv = (K @ xyz)[:2] / z``.

Keypoints are in the common order of :mod:`mle_hand_pipeline.keypoints` (wrist, then each finger from
the palm to the tip).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mle_hand_pipeline.keypoints import FINGER_KEYPOINTS, FINGERS, NUM_KEYPOINTS

# Knuckle (MCP) positions of the four fingers and the thumb's CMC, hand-local, metres, for an
# average adult right hand. The slight palmar z of the outer fingers is the palm's transverse arch.
_BASE_JOINTS: dict[str, tuple[float, float, float]] = {
    "thumb": (0.024, 0.026, 0.012),
    "index": (0.025, 0.087, 0.000),
    "middle": (0.003, 0.090, 0.000),
    "ring": (-0.016, 0.085, 0.003),
    "pinky": (-0.032, 0.077, 0.007),
}

# Per-finger segment lengths (metres), palm to tip. For the thumb: metacarpal, proximal phalanx,
# distal phalanx to the tip; for the others: proximal, middle, distal phalanx to the tip. Values are
# typical adult anthropometry, cross-checked against joint distances of real RHD labels.
BONE_LENGTHS: dict[str, tuple[float, float, float]] = {
    "thumb": (0.042, 0.033, 0.027),
    "index": (0.038, 0.025, 0.023),
    "middle": (0.042, 0.028, 0.025),
    "ring": (0.039, 0.027, 0.024),
    "pinky": (0.031, 0.020, 0.021),
}

# Capsule radii (metres) at each finger's four keypoints, palm to tip; the renderer tapers between
# them. Fingers are ~20 mm thick at the knuckle and ~15 mm at the tip.
JOINT_RADII: dict[str, tuple[float, float, float, float]] = {
    "thumb": (0.0135, 0.0115, 0.0102, 0.0090),
    "index": (0.0105, 0.0095, 0.0085, 0.0076),
    "middle": (0.0108, 0.0098, 0.0088, 0.0078),
    "ring": (0.0102, 0.0092, 0.0082, 0.0074),
    "pinky": (0.0092, 0.0082, 0.0073, 0.0066),
}

# Plausible range of a hand's overall scale around the average hand above (child-ish to large).
SCALE_RANGE = (0.88, 1.12)

# Neutral in-palm spread direction of each finger (degrees, positive towards the thumb).
_NEUTRAL_SPREAD = {"index": 6.0, "middle": 0.0, "ring": -6.0, "pinky": -13.0}
# How far a fully spread hand abducts each finger beyond neutral (degrees).
_MAX_SPREAD = {"index": 14.0, "middle": 3.0, "ring": -9.0, "pinky": -20.0}


@dataclass(frozen=True)
class HandPose:
    """One posed hand in its local frame.

    Attributes:
        joints: (21, 3) float64, keypoints in the hand-local frame (metres), common order.
        radii: (21,) float64, capsule radius at each keypoint (metres); the wrist entry is the
            forearm's half width at the wrist.
        outline: (M, 3) float64, palm outline polygon in the local frame, in order around the palm.
        outline_radii: (M,) float64, half thickness of the palm's rounded rim at each outline point
            (metres); it gives the palm its thickness in side views.
        is_left: whether ``joints`` were mirrored into a left hand.
        scale: overall size relative to the average hand (1.0), for sizing attached parts (arm).
    """

    joints: np.ndarray
    radii: np.ndarray
    outline: np.ndarray
    outline_radii: np.ndarray
    is_left: bool
    scale: float = 1.0


def rotation_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about ``axis`` (any length > 0), Rodrigues' formula."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    x, y, z = axis
    skew = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * skew + (1.0 - np.cos(angle)) * (skew @ skew)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _sample_curls(rng: np.random.Generator) -> dict[str, float]:
    """Per-finger curl in [0, 1] (0 straight, 1 fist), drawn from a few grasp archetypes.

    Independent per-finger uniforms would almost never produce the fists, pointing and pinching
    hands real data is full of, so a shared "grip" is drawn first and fingers deviate from it.
    """
    kind = rng.choice(
        ["open", "relaxed", "fist", "point", "pinch", "random"], p=[0.25, 0.3, 0.1, 0.1, 0.1, 0.15]
    )
    base = {"open": 0.05, "relaxed": 0.25, "fist": 0.9, "point": 0.85, "pinch": 0.4, "random": 0.4}[kind]
    spread = 0.35 if kind == "random" else 0.12
    curls = {f: float(np.clip(base + rng.normal(0.0, spread), 0.0, 1.0)) for f in FINGERS}
    if kind == "point":
        curls["index"] = float(rng.uniform(0.0, 0.15))
    if kind == "pinch":
        curls["index"] = float(rng.uniform(0.35, 0.7))
        curls["thumb"] = float(rng.uniform(0.4, 0.8))
    return curls


def sample_pose(rng: np.random.Generator, *, is_left: bool = False) -> HandPose:
    """Draw a random, joint-limited hand pose with randomised bone lengths.

    Joint limits (degrees): finger MCP flexion -15..90 with a spread of up to ~20 (pinky ~33) from
    the hand axis, PIP flexion 0..105, DIP flexion 0..80 (coupled to PIP as in real hands,
    DIP ≈ 2/3 PIP); thumb metacarpal swung between adducted, radially abducted and opposed, thumb
    MCP flexion -5..55, IP flexion -10..80.

    Args:
        rng: source of randomness (consumed in a fixed order, so a seeded generator gives one pose).
        is_left: mirror the hand into a left hand.

    Returns:
        The posed hand (see :class:`HandPose`); ``joints`` is (21, 3) metres, hand-local.
    """
    scale = rng.uniform(*SCALE_RANGE)
    curls = _sample_curls(rng)
    spread = rng.uniform(-0.3, 1.0)
    palmar = np.array([0.0, 0.0, 1.0])

    joints = np.zeros((NUM_KEYPOINTS, 3))
    radii = np.zeros(NUM_KEYPOINTS)
    radii[0] = 0.024 * scale  # half the wrist's width: the wrist keypoint's flesh for visibility
    for finger in FINGERS:
        idx = FINGER_KEYPOINTS[finger]
        # Independent ±5 % per bone so that proportions, not only size, vary between hands.
        lengths = np.asarray(BONE_LENGTHS[finger]) * scale * rng.uniform(0.95, 1.05, size=3)
        base = np.asarray(_BASE_JOINTS[finger]) * scale
        radii[list(idx)] = np.asarray(JOINT_RADII[finger]) * scale
        curl = curls[finger]
        if finger == "thumb":
            # The thumb metacarpal swings on a saddle joint: blend three directions.
            adducted = np.array([0.60, 0.79, 0.10])
            abducted = np.array([0.93, 0.33, 0.16])
            opposed = np.array([0.10, 0.62, 0.78])
            radial = rng.uniform(0.0, 1.0)
            opposition = np.clip(0.6 * curl + rng.normal(0.0, 0.25), 0.0, 1.0)
            d0 = _unit(adducted + radial * (abducted - adducted) + opposition * (opposed - adducted))
            # The thumb flexes across the palm, towards the little finger and the palmar side.
            towards = np.array([-0.65, 0.0, 0.76])
            bend = _unit(towards - np.dot(towards, d0) * d0)
            angles = np.radians(
                [
                    0.0,
                    np.clip(55.0 * curl + rng.normal(0.0, 10.0), -5.0, 55.0),
                    np.clip(80.0 * curl + rng.normal(0.0, 12.0), -10.0, 80.0),
                ]
            )
        else:
            abduction = _NEUTRAL_SPREAD[finger] + spread * _MAX_SPREAD[finger] * (1.0 - 0.6 * curl)
            abduction += rng.normal(0.0, 3.0)
            a = np.radians(abduction)
            d0 = np.array([np.sin(a), np.cos(a), 0.0])
            bend = palmar
            mcp = np.clip(90.0 * curl + rng.normal(0.0, 12.0), -15.0, 90.0)
            pip = np.clip(105.0 * curl + rng.normal(0.0, 12.0), 0.0, 105.0)
            dip = np.clip(pip * 2.0 / 3.0 + rng.normal(0.0, 8.0), 0.0, 80.0)
            angles = np.radians([mcp, pip, dip])
        # Hinge joints: all phalanges of a finger bend about one axis, so angles accumulate.
        axis = np.cross(d0, bend)
        joints[idx[0]] = base
        total = 0.0
        for k in range(3):
            total += angles[k]
            direction = rotation_matrix(axis, total) @ d0
            joints[idx[k + 1]] = joints[idx[k]] + lengths[k] * direction

    outline = _palm_outline(joints, scale)
    if is_left:
        mirror = np.array([-1.0, 1.0, 1.0])
        joints = joints * mirror
        outline = outline * mirror
    return HandPose(
        joints=joints,
        radii=radii,
        outline=outline,
        outline_radii=_PALM_RIM * scale,
        is_left=is_left,
        scale=float(scale),
    )


# Rim half-thickness (metres) at each point of :func:`_palm_outline`: thick at the heel of the hand and
# the thenar, thin at the web between thumb and index finger.
_PALM_RIM = np.array([0.014, 0.014, 0.013, 0.007, 0.010, 0.009, 0.009, 0.009, 0.009, 0.012, 0.013])


def _palm_outline(joints: np.ndarray, scale: float) -> np.ndarray:
    """(M, 3) palm polygon around the wrist, thenar, knuckles and hypothenar, hand-local metres."""
    s = scale
    thumb_cmc, thumb_mcp = joints[1], joints[2]
    index, middle, ring, pinky = joints[5], joints[9], joints[13], joints[17]
    return np.array(
        [
            [0.025 * s, -0.013 * s, 0.0],  # radial side of the wrist, below the wrist keypoint
            thumb_cmc + np.array([0.008, 0.0, 0.0]) * s,
            0.55 * thumb_cmc + 0.45 * thumb_mcp + np.array([0.004, 0.0, 0.002]) * s,  # thenar bulge
            0.35 * thumb_mcp + 0.65 * index + np.array([0.004, -0.006, 0.0]) * s,  # thumb web
            index + np.array([0.009, 0.004, 0.0]) * s,
            0.5 * (index + middle) + np.array([0.0, 0.007, 0.0]) * s,
            0.5 * (middle + ring) + np.array([0.0, 0.006, 0.0]) * s,
            0.5 * (ring + pinky) + np.array([0.0, 0.005, 0.0]) * s,
            pinky + np.array([-0.008, 0.002, 0.0]) * s,
            np.array([-0.035, 0.035, 0.004]) * s,  # hypothenar
            np.array([-0.026, -0.013, 0.0]) * s,  # ulnar side of the wrist
        ]
    )


def random_rotation(
    rng: np.random.Generator, *, max_pitch_deg: float = 60.0, yaw_spread_deg: float = 50.0
) -> np.ndarray:
    """(3, 3) rotation taking hand-local coordinates to camera coordinates.

    The base view shows a right hand's palm to the camera with the fingers pointing up. On top of it
    come a yaw about the finger axis, a pitch towards/away from the camera and a uniform in-plane
    roll. The yaw is centred on a palm or a back view (equally likely) with a normal spread, so side
    views occur but do not dominate: seen edge-on, fingers hide each other and most keypoints.
    Pitch is limited because fingers pointing straight at the lens are rare and degenerate.
    """
    base = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
    yaw = rng.choice([0.0, np.pi]) + np.radians(rng.normal(0.0, yaw_spread_deg))
    pitch = np.radians(rng.uniform(-max_pitch_deg, max_pitch_deg))
    roll = rng.uniform(-np.pi, np.pi)
    return (
        rotation_matrix([0.0, 0.0, 1.0], roll)
        @ rotation_matrix([1.0, 0.0, 0.0], pitch)
        @ rotation_matrix([0.0, 1.0, 0.0], yaw)
        @ base
    )


def intrinsics(focal: float, cx: float, cy: float) -> np.ndarray:
    """(3, 3) pinhole K with ``fx == fy == focal`` pixels and principal point (cx, cy)."""
    return np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])


def project(xyz: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixels (N, 2) of camera-frame points ``xyz`` (N, 3) (metres, z > 0) under intrinsics K (3, 3)."""
    uvw = xyz @ K.T
    return uvw[:, :2] / uvw[:, 2:3]


def place_hand(
    local: np.ndarray,
    rotation: np.ndarray,
    K: np.ndarray,
    *,
    centre_px: tuple[float, float],
    size_px: float,
    min_depth: float = 0.2,
    max_depth: float = 4.0,
) -> np.ndarray:
    """Translation (3,) in metres that puts a rotated hand at ``centre_px`` spanning ``size_px``.

    ``size_px`` is the larger side of the projected keypoint box. The depth follows from the
    pinhole relation size ∝ 1/z, measured once at a reference depth; clamping it keeps every joint in
    front of the camera even when the hand is strongly foreshortened.

    Args:
        local: (N, 3) hand-local points (metres) whose box is measured (the 21 joints).
        rotation: (3, 3) local-to-camera rotation.
        K: (3, 3) intrinsics.
        centre_px: where the centre of the keypoint box should land (u, v pixels).
        size_px: wanted max(width, height) of the projected keypoint box, pixels.
    """
    rotated = local @ rotation.T
    centre3 = 0.5 * (rotated.min(axis=0) + rotated.max(axis=0))
    ref_depth = 1.0
    uv = project(rotated - centre3 + np.array([0.0, 0.0, ref_depth]), K)
    extent = float(np.max(uv.max(axis=0) - uv.min(axis=0)))
    depth = float(np.clip(ref_depth * extent / max(size_px, 1.0), min_depth, max_depth))
    # Keep the nearest joint at least 10 cm in front of the camera.
    depth = max(depth, 0.1 - float((rotated - centre3)[:, 2].min()))
    target = np.array(
        [(centre_px[0] - K[0, 2]) * depth / K[0, 0], (centre_px[1] - K[1, 2]) * depth / K[1, 1], depth]
    )
    return target - centre3
