"""Heatmap MSE (Gaussian targets) and the integral L1 loss."""

import pytest
import torch

from mle_hand_pipeline.losses import HeatmapMSELoss, IntegralL1Loss, gaussian_heatmaps
from mle_hand_pipeline.models import PoseOutput, argmax_decode, soft_argmax


def test_gaussian_target_peak_and_width():
    # cell (20, 10) centre in normalised coords on a 64x64 map
    coords = torch.tensor([[(10 + 0.5) / 64 - 0.5, (20 + 0.5) / 64 - 0.5]])
    maps = gaussian_heatmaps(coords, 64, 64, 2.0, 2.0)
    assert maps.shape == (1, 64, 64)
    assert maps[0, 20, 10].item() == pytest.approx(1.0)
    assert maps[0, 20, 12].item() == pytest.approx(torch.exp(torch.tensor(-0.5)).item())  # 1 sigma = 2 cells
    torch.testing.assert_close(argmax_decode(maps), coords)


def test_gaussian_target_subcell_consistent_with_soft_argmax():
    coords = torch.tensor([[0.123, -0.211]])
    maps = gaussian_heatmaps(coords, 32, 48, 1.5, 1.0)
    torch.testing.assert_close(soft_argmax(maps.log()), coords, atol=1e-4, rtol=0)


def make_batch(h: int = 16):
    target = torch.tensor([[[0.1, -0.2], [0.3, 0.0]], [[-0.4, 0.4], [0.0, 0.0]]])
    visible = torch.tensor([[True, False], [True, True]])
    perfect = gaussian_heatmaps(target, h, h, 2 * h / 64, 2 * h / 64)
    return target, visible, perfect


def test_heatmap_loss_zero_for_perfect_maps_and_sums_stages():
    target, visible, perfect = make_batch()
    maps = torch.stack([perfect, perfect + 0.1, perfect], dim=1).requires_grad_()
    result = HeatmapMSELoss()(PoseOutput(torch.zeros(2, 3, 2, 2), None, maps), target, visible)
    torch.testing.assert_close(result.per_stage, torch.tensor([0.0, 0.01, 0.0]))
    torch.testing.assert_close(result.total, torch.tensor(0.01))
    result.total.backward()
    assert (maps.grad[0, :, 1] == 0).all()  # the invisible keypoint gets no gradient


def test_heatmap_loss_ignores_invisible_and_zero_visible():
    target, visible, _ = make_batch()
    maps = torch.randn(2, 1, 2, 16, 16, requires_grad=True)
    out = PoseOutput(torch.zeros(2, 1, 2, 2), None, maps)
    loss = HeatmapMSELoss()
    changed = target.clone()
    changed[0, 1] = float("nan")
    torch.testing.assert_close(loss(out, changed, visible).total, loss(out, target, visible).total)
    none = loss(out, changed, torch.zeros_like(visible))
    assert none.total.item() == 0.0 and none.total.grad_fn is not None


def test_integral_l1_value_and_masking():
    coords = torch.zeros(2, 2, 2, 2, requires_grad=True)
    target, visible, _ = make_batch()
    target = target.clone()
    target[0, 1] = float("nan")
    result = IntegralL1Loss()(PoseOutput(coords), target, visible)
    per_kp = (0.1 + 0.2) + (0.4 + 0.4) + 0.0  # the three visible keypoints
    torch.testing.assert_close(result.per_stage, torch.tensor([per_kp / 3, per_kp / 3]))
    result.total.backward()
    assert torch.isfinite(coords.grad).all()
    zero = IntegralL1Loss()(PoseOutput(coords), target, torch.zeros_like(visible))
    assert zero.total.item() == 0.0 and zero.total.grad_fn is not None
