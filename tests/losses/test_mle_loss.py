"""The MLE loss: its exact formula, masking, edge cases and numerics."""

import math

import pytest
import torch

from mle_hand_pipeline.losses import LossResult, MLELoss, RLELoss
from mle_hand_pipeline.methods import build_loss, build_model
from mle_hand_pipeline.models import PoseOutput

B, T, K = 3, 2, 5


def fake_output(seed: int = 0, requires_grad: bool = True) -> PoseOutput:
    gen = torch.Generator().manual_seed(seed)
    coords = (torch.rand(B, T, K, 2, generator=gen) - 0.5).requires_grad_(requires_grad)
    sigmas = (torch.rand(B, T, K, 2, generator=gen) * 0.2 + 0.01).requires_grad_(requires_grad)
    return PoseOutput(coords, sigmas, None)


def fake_labels(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    target = torch.rand(B, K, 2, generator=gen) - 0.5
    visible = torch.rand(B, K, generator=gen) > 0.3
    visible[0, 0] = False
    visible[1, 1] = True
    return target, visible


def perturbed_loss(residual: str = "none") -> MLELoss:
    torch.manual_seed(0)
    loss = MLELoss(stages=T, residual=residual)
    with torch.no_grad():
        for p in loss.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return loss


@pytest.mark.parametrize("residual", ["none", "laplace", "gaussian"])
def test_exact_formula(residual):
    loss = perturbed_loss(residual)
    out = fake_output()
    target, visible = fake_labels()
    result = loss(out, target, visible)
    assert isinstance(result, LossResult)

    expected = []
    for t in range(T):
        terms = []
        for b in range(B):
            for k in range(K):
                if not visible[b, k]:
                    continue
                eps = (target[b, k] - out.coords[b, t, k]) / out.sigmas[b, t, k]
                value = -loss.flows[t].log_prob(eps[None])[0] + out.sigmas[b, t, k].log().sum()
                if residual == "laplace":
                    value = value + (eps.abs() + math.log(2)).sum()
                elif residual == "gaussian":
                    value = value + (eps**2 / 2 + math.log(2 * math.pi) / 2).sum()
                terms.append(value)
        expected.append(torch.stack(terms).mean())
    expected = torch.stack(expected)
    torch.testing.assert_close(result.per_stage, expected.detach())
    torch.testing.assert_close(result.total, expected.sum())
    assert result.per_stage.shape == (T,) and not result.per_stage.requires_grad


def test_identity_flow_pure_form_is_gaussian_nll():
    loss = MLELoss(stages=1)  # identity init: the flow density is ~ N(0, I)
    coords = torch.zeros(1, 1, 1, 2)
    sigmas = torch.full((1, 1, 1, 2), 0.1)
    target = torch.tensor([[[0.1, -0.2]]])
    result = loss(PoseOutput(coords, sigmas), target, torch.ones(1, 1, dtype=torch.bool))
    eps2 = (0.1 / 0.1) ** 2 + (0.2 / 0.1) ** 2
    expected = 0.5 * eps2 + math.log(2 * math.pi) + 2 * math.log(0.1)
    assert result.total.item() == pytest.approx(expected, abs=1e-2)


def test_invisible_keypoints_are_ignored():
    loss = perturbed_loss()
    out = fake_output()
    target, visible = fake_labels()
    base = loss(out, target, visible).total
    changed = target.clone()
    changed[~visible] = torch.tensor([float("nan"), 1e6])
    result = loss(out, changed, visible)
    torch.testing.assert_close(result.total, base)
    result.total.backward()
    assert torch.isfinite(out.coords.grad).all() and torch.isfinite(out.sigmas.grad).all()
    assert (out.coords.grad[~visible[:, None].expand(B, T, K)] == 0).all()


def test_zero_visible_gives_finite_zero_with_grad():
    loss = MLELoss(stages=T)
    out = fake_output()
    target, _ = fake_labels()
    result = loss(out, target * float("nan"), torch.zeros(B, K, dtype=torch.bool))
    assert result.total.item() == 0.0
    assert result.total.grad_fn is not None
    result.total.backward()
    assert (out.coords.grad == 0).all() and torch.isfinite(out.sigmas.grad).all()


def test_scale_independent_of_batch_size():
    loss = perturbed_loss()
    out = fake_output(requires_grad=False)
    target, visible = fake_labels()
    doubled = PoseOutput(torch.cat([out.coords] * 2), torch.cat([out.sigmas] * 2))
    torch.testing.assert_close(
        loss(doubled, torch.cat([target] * 2), torch.cat([visible] * 2)).total,
        loss(out, target, visible).total,
    )


def test_collapsed_sigma_stays_finite():
    out = fake_output(requires_grad=False)
    out = PoseOutput(out.coords, torch.zeros_like(out.sigmas))
    target, visible = fake_labels()
    result = MLELoss(stages=T)(out, target, visible)
    assert torch.isfinite(result.total)


def test_mismatches_raise():
    out = fake_output()
    target, visible = fake_labels()
    with pytest.raises(ValueError, match="stages"):
        MLELoss(stages=T + 1)(out, target, visible)
    with pytest.raises(ValueError, match="sigmas"):
        MLELoss(stages=T)(PoseOutput(out.coords), target, visible)
    with pytest.raises(ValueError, match="target"):
        MLELoss(stages=T)(out, target[:, :-1], visible)
    with pytest.raises(ValueError, match="laplace"):
        MLELoss(residual="cauchy")


def test_rle_loss_is_single_stage_laplace_mle():
    loss = build_loss("rle", stages=5)
    assert isinstance(loss, RLELoss) and len(loss.flows) == 1 and loss.residual == "laplace"
    assert build_loss("rle", stages=5, residual="none").residual == "none"
    mle = build_loss("mle", stages=3, residual="gaussian", flow_init="default")
    assert len(mle.flows) == 3 and mle.residual == "gaussian"


@pytest.mark.parametrize("method", ["mle", "heatmap_l2", "integral", "rle", "cpm"])
def test_loss_is_float32_under_bf16_autocast(method):
    torch.manual_seed(0)
    model = build_model(method, backbone="resnet18", stages=2, input_size=64, head_channels=16)
    loss = build_loss(method, stages=2)
    target = torch.rand(2, 21, 2) - 0.5
    visible = torch.ones(2, 21, dtype=torch.bool)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 64, 64))
        result = loss(out, target, visible)
    assert result.total.dtype == torch.float32 and result.per_stage.dtype == torch.float32
    assert torch.isfinite(result.total)
    result.total.backward()


def test_error_rms_of_a_near_identity_flow_is_that_of_its_density():
    loss = MLELoss(stages=2)
    torch.testing.assert_close(loss.error_rms(), torch.ones(2, 2), atol=0.02, rtol=0)
    torch.testing.assert_close(loss.error_rms(seed=5), loss.error_rms(seed=5), atol=0, rtol=0)
    # Residual Laplace: per coordinate the density is proportional to N(e; 0, 1) * exp(-|e|).
    grid = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
    density = torch.exp(-0.5 * grid**2 - grid.abs())
    expected = ((density * grid**2).sum() / density.sum()).sqrt().item()
    laplace = MLELoss(stages=1, residual="laplace")
    torch.testing.assert_close(laplace.error_rms(), torch.full((1, 2), expected), atol=0.02, rtol=0)


def test_error_rms_follows_the_fitted_flow():
    """Fit stage 1's flow to eps ~ N(0, diag(0.3, 0.6)^2) at sigma = 1: error_rms learns those RMSs,
    and sigma * error_rms is then the RMS error of the data the loss saw."""
    torch.manual_seed(0)
    loss = MLELoss(stages=1)
    optimizer = torch.optim.Adam(loss.parameters(), lr=1e-2)
    spread = torch.tensor([0.3, 0.6])
    visible = torch.ones(256, 1, dtype=torch.bool)
    for _ in range(400):
        target = torch.randn(256, 1, 2) * spread
        out = PoseOutput(torch.zeros(256, 1, 1, 2), torch.ones(256, 1, 1, 2))
        optimizer.zero_grad()
        loss(out, target, visible).total.backward()
        optimizer.step()
    torch.testing.assert_close(loss.error_rms()[0], spread, rtol=0.1, atol=0)
