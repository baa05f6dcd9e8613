"""Batched, keypoint-consistent augmentation on the training device.

One random affine per image (rotation, scale, shift, horizontal flip) is applied to the whole batch
with ``affine_grid``/``grid_sample``, which also resamples the stored crops to the model input
size; keypoints go through the same transform. Colour jitter follows. Flipping mirrors the hand
(a right hand becomes a left one): hand keypoints have no left/right pairs, so their indices stay.

Coordinates: crop pixels ``x`` in ``[0, S_crop)`` map to normalised ``u = x / S_crop - 0.5``;
``affine_grid`` (``align_corners=False``) works in ``g = 2u``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AugmentSettings:
    """The ``train.augment`` parameter block (MMPose's RHD recipe as the default ranges).

    rotation: maximum absolute rotation in degrees (uniform in [-rotation, rotation]).
    rotation_prob: probability of rotating an image at all.
    scale: (min, max) zoom factor (> 1 zooms in).
    shift: maximum shift as a fraction of the crop side, per axis.
    flip_prob: probability of a horizontal flip.
    brightness, contrast, saturation: jitter strengths j; factors uniform in [1 - j, 1 + j].
    """

    rotation: float = 180.0
    rotation_prob: float = 0.6
    scale: tuple[float, float] = (0.7, 1.3)
    shift: float = 0.16
    flip_prob: float = 0.5
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3


def _uniform(low: float, high: float, n: int, generator: torch.Generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def random_affines(n: int, settings: AugmentSettings, generator: torch.Generator, device) -> torch.Tensor:
    """(n, 2, 3) input->output affines in ``affine_grid`` coordinates ``g``: flip, rotate, scale, shift."""
    angle = _uniform(-settings.rotation, settings.rotation, n, generator, device) * (math.pi / 180)
    angle = angle * (torch.rand(n, generator=generator, device=device) < settings.rotation_prob)
    scale = _uniform(*settings.scale, n, generator, device)
    shift = _uniform(-settings.shift, settings.shift, 2 * n, generator, device).view(n, 2) * 2  # in g units
    flip = torch.where(torch.rand(n, generator=generator, device=device) < settings.flip_prob, -1.0, 1.0)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    forward = torch.zeros(n, 2, 3, device=device)
    forward[:, 0, 0] = cos * flip
    forward[:, 0, 1] = -sin
    forward[:, 1, 0] = sin * flip
    forward[:, 1, 1] = cos
    forward[:, :, 2] = shift
    return forward


def _invert(affine: torch.Tensor) -> torch.Tensor:
    square = torch.eye(3, device=affine.device).repeat(len(affine), 1, 1)
    square[:, :2] = affine
    return torch.linalg.inv(square)[:, :2]


def warp_batch(
    images: torch.Tensor,
    keypoints: torch.Tensor,
    visible: torch.Tensor,
    forward: torch.Tensor | None,
    output_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply per-image affines to images and keypoints.

    Args:
        images: (B, 3, S_crop, S_crop) float in [0, 1].
        keypoints: (B, K, 2) crop pixels.
        visible: (B, K) bool.
        forward: (B, 2, 3) input->output affines in ``g`` coordinates, or None for a plain resize.
        output_size: S, side of the output images.

    Returns:
        images (B, 3, S, S); keypoints (B, K, 2) normalised to the output, ``u`` in [-0.5, 0.5];
        visible (B, K), cleared for keypoints the transform moved outside the output.
    """
    crop_size = images.shape[-1]
    normalised = keypoints / crop_size - 0.5
    if forward is None:
        if crop_size != output_size:
            images = F.interpolate(
                images, size=(output_size, output_size), mode="bilinear", antialias=True, align_corners=False
            )
        return images, normalised, visible
    grid = F.affine_grid(_invert(forward), [len(images), 3, output_size, output_size], align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    g = 2 * normalised
    moved = torch.einsum("bij,bkj->bki", forward[:, :, :2], g) + forward[:, None, :, 2]
    normalised = moved / 2
    inside = (normalised.abs() < 0.5).all(dim=-1)
    return images, normalised, visible & inside


def colour_jitter(
    images: torch.Tensor, settings: AugmentSettings, generator: torch.Generator
) -> torch.Tensor:
    """Per-image brightness, contrast and saturation jitter of (B, 3, H, W) images in [0, 1]."""
    n, device = len(images), images.device

    def factors(strength: float) -> torch.Tensor:
        return _uniform(1 - strength, 1 + strength, n, generator, device).view(n, 1, 1, 1)

    images = images * factors(settings.brightness)
    grey = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]).unsqueeze(1)
    images = (images - grey.mean(dim=(2, 3), keepdim=True)) * factors(settings.contrast) + grey.mean(
        dim=(2, 3), keepdim=True
    )
    images = grey + (images - grey) * factors(settings.saturation)
    return images.clamp(0, 1)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std normalisation of (B, 3, H, W) images in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def prepare_batch(
    batch: dict[str, torch.Tensor],
    input_size: int,
    device: torch.device,
    settings: AugmentSettings | None,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loader batch -> (normalised images (B,3,S,S), target (B,K,2) normalised coords, visible (B,K)).

    With ``settings`` None (evaluation) the crops are only resized.
    """
    images = batch["image"].to(device, non_blocking=True).float() / 255
    keypoints = batch["keypoints"].to(device, non_blocking=True)
    visible = batch["visible"].to(device, non_blocking=True)
    forward = None if settings is None else random_affines(len(images), settings, generator, device)
    images, target, visible = warp_batch(images, keypoints, visible, forward, input_size)
    if settings is not None:
        images = colour_jitter(images, settings, generator)
    return normalise(images), target, visible
