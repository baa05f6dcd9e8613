r"""A Gaussian prior on the softmax of soft-argmax heatmaps: an option of the MLE and integral losses.

Soft-argmax reads a keypoint as the expectation of ``softmax(H)`` over the map's cell centres. Mass
spread over the map pulls that expectation towards the map's centre, and the coordinate loss alone
gives each cell a gradient proportional to its tiny probability, so from flat initial maps the
network learns peaked maps slowly and, until it has, draws every hand too small (Gu, Yang and Yao,
"Removing the Bias of Integral Pose Regression", ICCV 2021; DSNT's regulariser, Nibali et al. 2018,
is the same idea). The prior adds, per visible keypoint and stage, the divergence

    KL(G || softmax(H)) = sum_p G(p) (log G(p) - log softmax(H)(p))

where ``G`` is the Gaussian at the label (:func:`~.heatmap.gaussian_heatmaps`, ``sigma_at_64`` cells
of a 64-cell map, scaled with the map) normalised to sum 1. Every cell gets a gradient
``softmax(H)(p) - G(p)``, the dense signal a heatmap loss has; the coordinate term (the flow's
likelihood, or L1) still decides the sub-cell position. The divergence is 0 when the softmax equals
the target and is in nats per keypoint.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..models.outputs import PoseOutput
from .common import safe_target
from .heatmap import gaussian_heatmaps


def check_prior(weight: float, sigma_at_64: float) -> None:
    """Refuse a negative prior weight or a non-positive sigma (``ValueError`` naming the option)."""
    if not weight >= 0:
        raise ValueError(f"heatmap_prior must be >= 0 (0 = off), got {weight}")
    if not sigma_at_64 > 0:
        raise ValueError(f"sigma_at_64 must be > 0, got {sigma_at_64}")


def prior_term(output: PoseOutput, target: Tensor, visible: Tensor, sigma_at_64: float) -> Tensor:
    """:func:`heatmap_prior_kl` of ``output.heatmaps`` (B, T, K, h, w): (B, T, K), 0 where not visible."""
    if output.heatmaps is None:
        raise ValueError("heatmap_prior needs a model with heatmaps (method 'mle' or 'integral', not 'rle')")
    goal = safe_target(target, visible, torch.zeros((), device=target.device))
    return heatmap_prior_kl(output.heatmaps, goal, sigma_at_64) * visible[:, None, :]


def heatmap_prior_kl(heatmaps: Tensor, target: Tensor, sigma_at_64: float) -> Tensor:
    """Per-keypoint divergence of every stage's softmax from the Gaussian at the label.

    Args:
        heatmaps: (B, T, K, h, w) logits (soft-argmax's input).
        target: (B, K, 2) normalised labels; invisible ones must already be finite (``safe_target``).
        sigma_at_64: the Gaussian's sigma in cells of a 64-cell map.

    Returns:
        (B, T, K) float32, >= 0.
    """
    b, t, k, h, w = heatmaps.shape
    goal = gaussian_heatmaps(target, h, w, sigma_at_64 * w / 64, sigma_at_64 * h / 64).reshape(b, 1, k, h * w)
    goal = goal / goal.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(goal.dtype).tiny)
    log_probs = torch.log_softmax(heatmaps.float().reshape(b, t, k, h * w), dim=-1)
    return (torch.xlogy(goal, goal) - goal * log_probs).sum(dim=-1)
