"""Integral-regression loss (Sun et al., ECCV 2018): L1 on soft-argmax coordinates, every stage.

L_t = sum_{b,k visible} (|x_hat - x_g| + |y_hat - y_g|) / max(1, #visible)    (normalised units)
L   = sum_t L_t

Option ``heatmap_prior`` (weight, default 0) adds the Gaussian prior on each stage's softmax maps of
:mod:`.heatmap_prior`, as for the MLE loss, so the two soft-argmax methods compare on equal terms.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..models.outputs import PoseOutput
from .common import LossResult, check_inputs, float32_region, masked_stage_mean, safe_target
from .heatmap_prior import check_prior, prior_term


class IntegralL1Loss(nn.Module):
    """L1 between each stage's coordinates and the label, visible keypoints only, summed over stages.

    Call: ``loss(output, target (B, K, 2), visible (B, K) bool) -> LossResult``; ``output.coords``
    must be differentiable (soft-argmax), as for method "integral".

    Args:
        heatmap_prior: weight of the Gaussian prior on each stage's softmax maps (0: off).
        sigma_at_64: the prior's sigma, in cells of a 64-cell map (scaled with the map).
    """

    def __init__(self, heatmap_prior: float = 0.0, sigma_at_64: float = 2.0) -> None:
        super().__init__()
        check_prior(heatmap_prior, sigma_at_64)
        self.heatmap_prior = heatmap_prior
        self.sigma_at_64 = sigma_at_64

    def forward(self, output: PoseOutput, target: Tensor, visible: Tensor) -> LossResult:
        """See the class docstring."""
        check_inputs(output.coords, target, visible)
        visible = visible.bool()
        with float32_region(output.coords.device):
            coords = output.coords.float()
            goal = safe_target(target[:, None], visible[:, None], coords.detach())
            per_keypoint = (coords - goal).abs().sum(dim=-1)
            if self.heatmap_prior:
                per_keypoint = per_keypoint + self.heatmap_prior * prior_term(
                    output, target, visible, self.sigma_at_64
                )
            per_stage = masked_stage_mean(per_keypoint, visible)
            total = per_stage.sum()
        return LossResult(total, per_stage.detach())
