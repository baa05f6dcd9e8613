"""Each method's model + loss can fit a fixed batch: the loss goes down over 30 Adam steps."""

import pytest
import torch

from mle_hand_pipeline.methods import METHODS, build_loss, build_model


@pytest.fixture
def one_thread():
    """One intra-op thread: these many tiny steps run faster and don't stall when the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("method", METHODS)
def test_loss_decreases_on_fixed_batch(method, one_thread):
    torch.manual_seed(0)
    model = build_model(method, backbone="resnet18", stages=2, input_size=64, head_channels=16)
    loss = build_loss(method, stages=2)
    optimiser = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=1e-3)
    images = torch.randn(2, 3, 64, 64)
    target = (torch.rand(2, 21, 2) - 0.5) * 0.8
    visible = torch.rand(2, 21) > 0.2
    values = []
    for _ in range(30):
        result = loss(model(images), target, visible)
        optimiser.zero_grad()
        result.total.backward()
        torch.nn.utils.clip_grad_norm_([*model.parameters(), *loss.parameters()], 5.0)
        optimiser.step()
        values.append(result.total.item())
    assert all(torch.isfinite(torch.tensor(values)))
    first, last = sum(values[:3]) / 3, sum(values[-3:]) / 3
    assert last < first - 0.1 * abs(first), values
