"""Heatmap MSE to Gaussian targets (heatmap-L2 and CPM baselines; the paper's Eq. 2).

Target for keypoint k on an h x w map, in cell units with cell centres at integers::

    c_x = (u_x + 0.5) * w - 0.5,  c_y = (u_y + 0.5) * h - 0.5      (u normalised crop coordinates)
    G[i, j] = exp(-((j - c_x)^2 / (2 s_x^2) + (i - c_y)^2 / (2 s_y^2)))   (peak 1)

with ``s_x = sigma_at_64 * w / 64`` (2 cells on a 64-cell map, as MMPose; 1 cell on CPM's 32x32 at
S = 256), built on the fly on the maps' device. Loss::

    L_t = sum_{b,k visible} mean_{i,j} (H[b,t,k,i,j] - G[b,k,i,j])^2 / max(1, #visible)
    L   = sum_t L_t            (intermediate supervision of every stage)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..models.outputs import PoseOutput
from .common import LossResult, check_inputs, float32_region, masked_stage_mean, safe_target


def gaussian_heatmaps(coords: Tensor, height: int, width: int, sigma_x: float, sigma_y: float) -> Tensor:
    """Gaussian target maps: normalised coords (..., 2) -> (..., height, width), peak 1, float32.

    ``sigma_x``, ``sigma_y`` are in heatmap cells.
    """
    coords = coords.float()
    cx = (coords[..., 0] + 0.5) * width - 0.5
    cy = (coords[..., 1] + 0.5) * height - 0.5
    xs = torch.arange(width, device=coords.device, dtype=torch.float32)
    ys = torch.arange(height, device=coords.device, dtype=torch.float32)
    gx = torch.exp(-((xs - cx[..., None]) ** 2) / (2 * sigma_x**2))
    gy = torch.exp(-((ys - cy[..., None]) ** 2) / (2 * sigma_y**2))
    return gy[..., :, None] * gx[..., None, :]


class HeatmapMSELoss(nn.Module):
    """MSE between every stage's maps and Gaussian targets, visible keypoints only, summed over stages.

    Args:
        sigma_at_64: target sigma in cells of a 64-cell map; scaled with the map size.

    Call: ``loss(output, target (B, K, 2), visible (B, K) bool) -> LossResult`` with
    ``output.heatmaps`` (B, T, K, h, w).
    """

    def __init__(self, sigma_at_64: float = 2.0) -> None:
        super().__init__()
        self.sigma_at_64 = sigma_at_64

    def forward(self, output: PoseOutput, target: Tensor, visible: Tensor) -> LossResult:
        """See the class docstring."""
        if output.heatmaps is None:
            raise ValueError("the heatmap loss needs a model that outputs heatmaps")
        check_inputs(output.coords, target, visible)
        visible = visible.bool()
        h, w = output.heatmaps.shape[-2:]
        with float32_region(output.heatmaps.device):
            maps = output.heatmaps.float()
            goal = gaussian_heatmaps(
                safe_target(target, visible, torch.zeros((), device=target.device)),
                h,
                w,
                self.sigma_at_64 * w / 64,
                self.sigma_at_64 * h / 64,
            )
            sq = (maps - goal[:, None]).square().mean(dim=(-2, -1))
            per_stage = masked_stage_mean(sq, visible)
            total = per_stage.sum()
        return LossResult(total, per_stage.detach())
