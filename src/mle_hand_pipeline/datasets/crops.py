"""Square hand crops and the mapping between crop and source-image pixels.

Pixel convention everywhere: continuous coordinates, pixel ``i`` covers ``[i, i + 1)``, so the
centre of the top-left pixel is (0.5, 0.5). Dataset labels (RHD, FreiHAND projections) use it too:
their principal points sit at the image centre (160, 160) and (112, 112).

A crop is the square ``[x0, x0 + side) x [y0, y0 + side)`` of the source resampled to
``size x size``, optionally mirrored left-right so that left hands look like right hands:

    u = (x - x0) * size / side        (u -> size - u when mirrored)
    v = (y - y0) * size / side
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class CropBox:
    """A square region of the source image: top-left corner and side, in source pixels."""

    x0: float
    y0: float
    side: float


def keypoint_box(keypoints: np.ndarray, visible: np.ndarray) -> tuple[float, float, float, float]:
    """Tight box ``(x0, y0, x1, y1)`` around the visible keypoints.

    Args:
        keypoints: (K, 2) pixel coordinates.
        visible: (K,) booleans; at least one must be set.
    """
    points = keypoints[visible]
    if len(points) == 0:
        raise ValueError("no visible keypoint to build a box from")
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def square_crop_box(box: tuple[float, float, float, float], scale: float, min_side: float) -> CropBox:
    """The square of side ``max(scale * max(w, h), min_side)`` centred on ``box``."""
    x0, y0, x1, y1 = box
    side = max(scale * max(x1 - x0, y1 - y0), min_side)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return CropBox(cx - side / 2, cy - side / 2, side)


def source_to_crop(points: np.ndarray, box: CropBox, size: int, mirrored: bool) -> np.ndarray:
    """Map (..., 2) source pixel coordinates into crop pixels."""
    scale = size / box.side
    u = (points[..., 0] - box.x0) * scale
    v = (points[..., 1] - box.y0) * scale
    if mirrored:
        u = size - u
    return np.stack([u, v], axis=-1)


def crop_to_source(points: np.ndarray, box: CropBox, size: int, mirrored: bool) -> np.ndarray:
    """Map (..., 2) crop pixel coordinates back to source pixels (inverse of :func:`source_to_crop`)."""
    u = points[..., 0]
    if mirrored:
        u = size - u
    scale = box.side / size
    return np.stack([box.x0 + u * scale, box.y0 + points[..., 1] * scale], axis=-1)


def warp_crop(image: Image.Image, box: CropBox, size: int, mirrored: bool) -> Image.Image:
    """Resample the square ``box`` of ``image`` to ``size x size`` (black outside the source)."""
    step = box.side / size
    # PIL's AFFINE data maps output pixel centres to input coordinates, in the same continuous
    # convention as the labels, so this is exactly the inverse of source_to_crop.
    if mirrored:
        coefficients = (-step, 0.0, box.x0 + box.side, 0.0, step, box.y0)
    else:
        coefficients = (step, 0.0, box.x0, 0.0, step, box.y0)
    return image.transform((size, size), Image.Transform.AFFINE, coefficients, Image.Resampling.BICUBIC)
