"""RealNVP: a proper density, an exact inverse, the right log-determinant."""

import pytest
import torch

from mle_hand_pipeline.models import RealNVP
from mle_hand_pipeline.models.flow import stacked_log_prob


def make_flow(init: str, perturb: float = 0.0, seed: int = 0) -> RealNVP:
    torch.manual_seed(seed)
    flow = RealNVP(init=init)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(torch.randn_like(p) * perturb)
    return flow


FLOWS = [("identity", 0.0), ("identity", 0.1), ("default", 0.0)]


@pytest.mark.parametrize(("init", "perturb"), FLOWS)
def test_density_integrates_to_one(init, perturb):
    flow = make_flow(init, perturb)
    grid = torch.linspace(-8, 8, 401)
    xs, ys = torch.meshgrid(grid, grid, indexing="xy")
    with torch.no_grad():
        density = flow.log_prob(torch.stack((xs.flatten(), ys.flatten()), dim=1)).exp().reshape(401, 401)
    mass = torch.trapezoid(torch.trapezoid(density, grid, dim=1), grid)
    assert abs(mass.item() - 1.0) < 0.02


@pytest.mark.parametrize(("init", "perturb"), FLOWS)
def test_inverse_of_forward_is_identity(init, perturb):
    flow = make_flow(init, perturb)
    z = torch.randn(500, 2)
    with torch.no_grad():
        back, _ = flow.inverse(flow(z))
    torch.testing.assert_close(back, z, atol=1e-5, rtol=0)


def test_log_det_matches_autograd_jacobian():
    flow = make_flow("default").double()
    x = torch.randn(5, 2, dtype=torch.double)
    _, log_det = flow.inverse(x)
    for i in range(5):
        jac = torch.autograd.functional.jacobian(lambda p: flow.inverse(p[None])[0][0], x[i])
        torch.testing.assert_close(log_det[i], torch.linalg.slogdet(jac).logabsdet)


def test_identity_init_is_standard_normal():
    flow = RealNVP(init="identity")
    x = torch.randn(100, 2)
    torch.testing.assert_close(flow.log_prob(x), RealNVP.prior_log_prob(x), atol=1e-3, rtol=0)


def test_structure_and_sample():
    flow = RealNVP()
    assert len(flow.s) == len(flow.t) == 6
    torch.testing.assert_close(flow.masks[:2], torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert isinstance(flow.s[0][-1], torch.nn.Tanh) and not isinstance(flow.t[0][-1], torch.nn.Tanh)
    assert flow.sample(7).shape == (7, 2)
    with pytest.raises(ValueError, match="identity"):
        RealNVP(init="zeros")


def test_stacked_log_prob_is_each_flows_own_with_the_same_gradients():
    flows = [make_flow(init, perturb, seed) for seed, (init, perturb) in enumerate(FLOWS)]
    x = torch.randn(len(flows), 50, 2) * 2
    stacked = stacked_log_prob(flows, x)
    separate = torch.stack([flow.log_prob(x[i]) for i, flow in enumerate(flows)])
    torch.testing.assert_close(stacked, separate, rtol=1e-5, atol=1e-5)

    stacked.square().sum().backward()
    stacked_grads = [[p.grad.clone() for p in flow.parameters()] for flow in flows]
    for flow in flows:
        flow.zero_grad()
    separate = torch.stack([flow.log_prob(x[i]) for i, flow in enumerate(flows)])
    separate.square().sum().backward()
    for flow, grads in zip(flows, stacked_grads, strict=True):
        for p, g in zip(flow.parameters(), grads, strict=True):
            torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6)
