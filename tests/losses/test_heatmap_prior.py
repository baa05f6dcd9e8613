"""The Gaussian prior on soft-argmax maps (loss option ``heatmap_prior`` of mle and integral)."""

import pytest
import torch

from mle_hand_pipeline.losses import IntegralL1Loss, MLELoss, gaussian_heatmaps
from mle_hand_pipeline.losses.heatmap_prior import heatmap_prior_kl
from mle_hand_pipeline.methods import build_loss
from mle_hand_pipeline.models import PoseOutput, soft_argmax

TARGET = torch.tensor([[[0.1, -0.2], [0.3, 0.0]], [[-0.4, 0.4], [0.0, 0.0]]])
VISIBLE = torch.tensor([[True, False], [True, True]])


def target_logits(h: int = 16, sigma_at_64: float = 2.0) -> torch.Tensor:
    """(B, 1, K, h, h) logits whose softmax is exactly the prior's normalised Gaussian."""
    goal = gaussian_heatmaps(TARGET, h, h, sigma_at_64 * h / 64, sigma_at_64 * h / 64)
    return goal.clamp_min(1e-30).log()[:, None]


def test_divergence_is_zero_at_the_target_and_positive_elsewhere():
    logits = target_logits()
    torch.testing.assert_close(heatmap_prior_kl(logits, TARGET, 2.0), torch.zeros(2, 1, 2), atol=1e-5, rtol=0)
    flat = torch.zeros_like(logits)
    assert (heatmap_prior_kl(flat, TARGET, 2.0) > 1.0).all()  # a flat map is far from a peaked prior


def test_gradient_is_softmax_minus_target_on_every_cell():
    logits = torch.zeros(1, 1, 1, 8, 8, requires_grad=True)
    target = torch.tensor([[[0.2, -0.1]]])
    heatmap_prior_kl(logits, target, 8.0).sum().backward()
    goal = gaussian_heatmaps(target, 8, 8, 1.0, 1.0)
    expected = torch.full((8, 8), 1 / 64) - goal[0, 0] / goal.sum()
    torch.testing.assert_close(logits.grad[0, 0, 0], expected)


@pytest.mark.parametrize("loss_class", [MLELoss, IntegralL1Loss])
def test_the_prior_adds_its_weighted_divergence_of_visible_keypoints(loss_class):
    maps = torch.randn(2, 1, 2, 16, 16)
    coords = soft_argmax(maps)
    sigmas = torch.full((2, 1, 2, 2), 0.1)
    output = PoseOutput(coords, sigmas, maps)
    stages = {"stages": 1} if loss_class is MLELoss else {}
    plain = loss_class(**stages)(output, TARGET, VISIBLE).total
    weighted = loss_class(**stages, heatmap_prior=0.5, sigma_at_64=3.0)(output, TARGET, VISIBLE).total
    kl = heatmap_prior_kl(maps, torch.where(VISIBLE[..., None], TARGET, 0.0), 3.0)[:, 0]
    expected = plain + 0.5 * kl[VISIBLE].sum() / VISIBLE.sum()
    torch.testing.assert_close(weighted, expected)


def test_invisible_garbage_labels_change_nothing():
    maps = torch.randn(2, 1, 2, 16, 16, requires_grad=True)
    output = PoseOutput(soft_argmax(maps), None, maps)
    loss = IntegralL1Loss(heatmap_prior=1.0)
    garbage = TARGET.clone()
    garbage[0, 1] = float("nan")
    value = loss(output, garbage, VISIBLE).total
    torch.testing.assert_close(value, loss(output, TARGET, VISIBLE).total)
    value.backward()
    assert torch.isfinite(maps.grad).all() and (maps.grad[0, 0, 1] == 0).all()


def test_options_are_checked_and_reach_the_losses_by_name():
    assert build_loss("mle", stages=2, heatmap_prior=0.3).heatmap_prior == 0.3
    assert build_loss("integral", stages=2, heatmap_prior=0.3, sigma_at_64=1.0).sigma_at_64 == 1.0
    with pytest.raises(ValueError, match="heatmap_prior must be >= 0"):
        build_loss("mle", stages=1, heatmap_prior=-1.0)
    with pytest.raises(ValueError, match="sigma_at_64 must be > 0"):
        IntegralL1Loss(heatmap_prior=1.0, sigma_at_64=0.0)


def test_a_model_without_maps_cannot_take_the_prior():
    output = PoseOutput(torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2))
    with pytest.raises(ValueError, match="needs a model with heatmaps"):
        MLELoss(stages=1, heatmap_prior=1.0)(output, TARGET, VISIBLE)


def test_the_prior_makes_flat_maps_peaked_and_soft_argmax_unbiased():
    """A few steps on the prior alone move soft-argmax of flat maps from the centre to the label."""
    maps = torch.zeros(1, 1, 1, 16, 16, requires_grad=True)
    target = torch.tensor([[[0.35, -0.3]]])
    optimiser = torch.optim.Adam([maps], lr=0.5)
    for _ in range(100):
        optimiser.zero_grad()
        heatmap_prior_kl(maps, target, 2.0).sum().backward()
        optimiser.step()
    torch.testing.assert_close(soft_argmax(maps.detach())[0, 0, 0], target[0, 0], atol=0.01, rtol=0)
