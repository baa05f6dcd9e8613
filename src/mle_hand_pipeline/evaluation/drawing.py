"""A hand skeleton drawn onto an image with Pillow: the overlays of ``predict`` and the panels of the
evaluation's qualitative grids."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mle_hand_pipeline.keypoints import SKELETON, bone_colour

WRIST_COLOUR: tuple[int, int, int] = (245, 245, 245)


def _kp_colour(k: int) -> tuple[int, int, int]:
    return WRIST_COLOUR if k == 0 else bone_colour(k)


def draw_skeleton(
    image: np.ndarray,
    keypoints: np.ndarray,
    visible: np.ndarray | None = None,
    colour_mode: str | tuple[int, int, int] = "fingers",
    radius: float = 3,
    line_width: int = 2,
    show_invisible: bool = False,
    annotate: bool = False,
) -> np.ndarray:
    """Draw a hand skeleton on a copy of ``image`` with Pillow.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (a greyscale ``(H, W)`` image is converted).
        keypoints: ``(K, 2)`` ``(x, y)`` pixel coordinates in ``image``.
        visible: ``(K,)`` bool, or None for all visible. A bone is drawn only when both of its ends
            are visible; an invisible keypoint is skipped, or drawn as a hollow circle when
            ``show_invisible``. Non-finite coordinates are always skipped.
        colour_mode: ``"fingers"`` (each bone and joint in its finger's colour from
            :data:`FINGER_COLOURS`, the wrist near-white) or one fixed RGB colour.
        radius: joint radius in pixels (filled discs with a dark outline; 0 draws bones only).
        line_width: bone width in pixels.
        annotate: write each keypoint's index next to it (checks the keypoint order).

    Returns:
        A new ``(H, W, 3)`` uint8 array.
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    pil = Image.fromarray(np.ascontiguousarray(arr[..., :3]).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(pil)
    kp = np.asarray(keypoints, dtype=float)
    finite = np.isfinite(kp).all(axis=-1)
    vis = finite if visible is None else (np.asarray(visible).astype(bool) & finite)

    def colour(k: int) -> tuple[int, int, int]:
        return _kp_colour(k) if colour_mode == "fingers" else tuple(int(c) for c in colour_mode)

    for parent, child in SKELETON:
        if child < len(kp) and vis[parent] and vis[child]:
            draw.line([tuple(kp[parent]), tuple(kp[child])], fill=colour(child), width=line_width)
    font = ImageFont.load_default() if annotate else None
    for k in range(len(kp)):
        if not finite[k] or (not vis[k] and not show_invisible):
            continue
        x, y = kp[k]
        box = [x - radius, y - radius, x + radius, y + radius]
        if radius > 0:
            if vis[k]:
                draw.ellipse(box, fill=colour(k), outline=(20, 20, 20), width=1)
            else:
                draw.ellipse(box, outline=colour(k), width=max(1, line_width // 2 + 1))
        if annotate:
            draw.text((x + radius + 1, y - radius - 1), str(k), fill=(255, 255, 255), font=font)
    return np.asarray(pil)
