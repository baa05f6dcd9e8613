"""The sequential model's stage-to-stage feedback (paper Section III-A-2, docs/stage_refinement.md):
stage t > 1 reads stage t-1's maps, average-pooled to the feature size, with gradient."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mle_hand_pipeline.models import SequentialHeatmapNet

# The three methods that share SequentialHeatmapNet, as models/factory.py builds them.
SEQUENTIAL = {
    "mle": {"with_variance": True, "decode": "soft_argmax"},
    "integral": {"with_variance": False, "decode": "soft_argmax"},
    "heatmap_l2": {"with_variance": False, "decode": "argmax"},
}


class StrideBackbone(nn.Module):
    """A one-conv stand-in for the ResNet (same stride 32), so the tests stay fast."""

    out_channels = 16
    stride = 32

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, self.out_channels, kernel_size=32, stride=32)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images)


def small_model(method: str, size: int = 64) -> SequentialHeatmapNet:
    torch.manual_seed(0)
    return SequentialHeatmapNet(
        StrideBackbone(), stages=3, input_size=size, head_channels=8, **SEQUENTIAL[method]
    ).train()


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("method", SEQUENTIAL)
def test_later_stage_reads_previous_maps_pooled_to_feature_size(method, size):
    model = small_model(method, size)
    seen = {}
    for t in (1, 2):
        model.stages[t].heatmap_proj.register_forward_hook(
            lambda module, inputs, output, t=t: seen.__setitem__(t, inputs[0])
        )
    out = model(torch.randn(2, 3, size, size))
    f = size // 32
    for t in (1, 2):
        assert seen[t].shape == (2, 21, f, f)
        # The paper's average pooling of the previous stage's (raw) maps to the 1/32 grid: 64x64 -> 8x8
        # at 256 px, 16x16 -> 2x2 at 64 px.
        torch.testing.assert_close(seen[t], F.adaptive_avg_pool2d(out.heatmaps[:, t - 1], f))


@pytest.mark.parametrize("method", SEQUENTIAL)
def test_gradient_of_the_last_stage_reaches_earlier_stages_through_the_feedback(method):
    """Not detached: the last stage's loss trains the feedback weights of every later stage and, only
    through the fed-back maps, the heads of the stages before it (the paper's direct gradient path)."""
    model = small_model(method)
    out = model(torch.randn(4, 3, 64, 64))
    # Stage 3's maps alone: heatmap_l2 decodes by argmax (no gradient), so use the maps for every method.
    (out.heatmaps[:, -1] * torch.randn_like(out.heatmaps[:, -1])).sum().backward()
    for t in (1, 2):
        assert model.stages[t].heatmap_proj[0].weight.grad.abs().max() > 0
    for t in (0, 1):  # heads of stages 1 and 2: reachable from stage 3's maps only via the feedback
        assert model.stages[t].heatmap_head.final.weight.grad.abs().max() > 0


def test_stage_output_depends_on_previous_maps():
    """Stage t's maps change when stage t-1's maps change (the feedback is used, not only computed)."""
    model = small_model("integral").eval()
    features = model.backbone(torch.randn(2, 3, 64, 64))
    first, _ = model.stages[0](features)
    second, _ = model.stages[1](features, first)
    other, _ = model.stages[1](features, first + torch.randn_like(first))
    assert (second - other).abs().max() > 0
