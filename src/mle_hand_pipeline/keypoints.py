"""The 21-keypoint hand layout shared by every part of the project.

The *common order* is FreiHAND's (and MMPose's): 0 wrist; then per finger, from the palm outwards,
thumb 1-4 (CMC, MCP, IP, tip), index 5-8 (MCP, PIP, DIP, tip), middle 9-12, ring 13-16, pinky 17-20.
RHD stores each finger from the tip inwards; :data:`RHD_TO_COMMON` reorders it.
"""

from __future__ import annotations

import numpy as np

NUM_KEYPOINTS = 21

KEYPOINT_NAMES: tuple[str, ...] = (
    "wrist",
    "thumb_cmc",
    "thumb_mcp",
    "thumb_ip",
    "thumb_tip",
    "index_mcp",
    "index_pip",
    "index_dip",
    "index_tip",
    "middle_mcp",
    "middle_pip",
    "middle_dip",
    "middle_tip",
    "ring_mcp",
    "ring_pip",
    "ring_dip",
    "ring_tip",
    "pinky_mcp",
    "pinky_pip",
    "pinky_dip",
    "pinky_tip",
)

FINGERS: tuple[str, ...] = ("thumb", "index", "middle", "ring", "pinky")

# Indices of each finger's four keypoints, palm to tip, in the common order.
FINGER_KEYPOINTS: dict[str, tuple[int, int, int, int]] = {
    name: tuple(range(1 + 4 * i, 5 + 4 * i)) for i, name in enumerate(FINGERS)
}

# Bones as (parent, child) pairs: the wrist to each finger's base, then along each finger.
SKELETON: tuple[tuple[int, int], ...] = tuple(
    pair for chain in FINGER_KEYPOINTS.values() for pair in zip((0, *chain[:-1]), chain, strict=True)
)

# Index an RHD hand's 21 keypoints with this to get the common order. It is its own inverse.
RHD_TO_COMMON = np.array([0, 4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13, 20, 19, 18, 17])

# The paper's 11-joint view for per-keypoint plots: the root, and each finger's base joint and tip.
PAPER_KEYPOINTS: tuple[int, ...] = (0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20)

# One colour per finger (RGB), used by every plot that draws a skeleton.
FINGER_COLOURS: dict[str, tuple[int, int, int]] = {
    "thumb": (230, 60, 60),
    "index": (240, 170, 40),
    "middle": (60, 190, 80),
    "ring": (50, 130, 230),
    "pinky": (170, 70, 210),
}


def bone_colour(child: int) -> tuple[int, int, int]:
    """Colour of the bone that ends at keypoint ``child`` (its finger's colour)."""
    return FINGER_COLOURS[FINGERS[(child - 1) // 4]]
