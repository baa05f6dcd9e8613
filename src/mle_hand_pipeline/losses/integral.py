"""Integral-regression loss (Sun et al., ECCV 2018): L1 on soft-argmax coordinates, every stage.

L_t = sum_{b,k visible} (|x_hat - x_g| + |y_hat - y_g|) / max(1, #visible)    (normalised units)
L   = sum_t L_t
"""

from __future__ import annotations

from torch import Tensor, nn

from ..models.outputs import PoseOutput
from .common import LossResult, check_inputs, float32_region, masked_stage_mean, safe_target


class IntegralL1Loss(nn.Module):
    """L1 between each stage's coordinates and the label, visible keypoints only, summed over stages.

    Call: ``loss(output, target (B, K, 2), visible (B, K) bool) -> LossResult``; ``output.coords``
    must be differentiable (soft-argmax), as for method "integral".
    """

    def forward(self, output: PoseOutput, target: Tensor, visible: Tensor) -> LossResult:
        """See the class docstring."""
        check_inputs(output.coords, target, visible)
        visible = visible.bool()
        with float32_region(output.coords.device):
            coords = output.coords.float()
            goal = safe_target(target[:, None], visible[:, None], coords.detach())
            per_stage = masked_stage_mean((coords - goal).abs().sum(dim=-1), visible)
            total = per_stage.sum()
        return LossResult(total, per_stage.detach())
