"""What every loss returns, and the helpers they share.

Every loss is called as ``loss(output: PoseOutput, target (B, K, 2), visible (B, K) bool)`` with
normalised crop coordinates, computes in float32 even under autocast, averages over *visible*
keypoints only, and returns a :class:`LossResult`. A batch without visible keypoints gives a zero loss
that still has a ``grad_fn`` (so ``backward()`` works and changes nothing).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class LossResult(NamedTuple):
    """A loss value.

    Attributes:
        total: scalar float32 tensor to call ``backward()`` on (the sum of ``per_stage``).
        per_stage: (T,) float32, detached: each stage's loss, for logging.
    """

    total: Tensor
    per_stage: Tensor


def float32_region(device: torch.device) -> torch.autocast:
    """A context that switches autocast off on ``device``'s type, so the loss runs in float32."""
    return torch.autocast(device_type=device.type, enabled=False)


def check_inputs(coords: Tensor, target: Tensor, visible: Tensor) -> None:
    """Shape checks: coords (B, T, K, 2), target (B, K, 2), visible (B, K)."""
    b, _, k, _ = coords.shape
    if target.shape != (b, k, 2):
        raise ValueError(f"target must be (B, K, 2) = ({b}, {k}, 2), got {tuple(target.shape)}")
    if visible.shape != (b, k):
        raise ValueError(f"visible must be (B, K) = ({b}, {k}), got {tuple(visible.shape)}")


def masked_stage_mean(values: Tensor, visible: Tensor) -> Tensor:
    """Mean over visible keypoints, per stage: values (B, T, K), visible (B, K) bool -> (T,).

    Divides by the number of visible keypoints in the batch (at least 1), so the scale depends on
    neither batch size nor visibility. ``values`` must be finite everywhere (callers neutralise
    invisible entries first, because ``0 * nan`` is nan).
    """
    weight = visible[:, None, :].to(values.dtype)
    count = visible.sum().clamp_min(1).to(values.dtype)
    return (values * weight).sum(dim=(0, 2)) / count


def safe_target(target: Tensor, visible: Tensor, fill: Tensor) -> Tensor:
    """target (B, K, 2) with invisible keypoints replaced by ``fill`` (broadcastable), in float32.

    Invisible labels may be garbage (NaN, -1, huge); replacing them keeps every intermediate finite.
    """
    return torch.where(visible[..., None], target.float(), fill)
