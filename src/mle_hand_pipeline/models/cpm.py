"""Convolutional Pose Machine baseline (Wei et al., CVPR 2016), scaled to be trainable on a CPU.

Image features (shared by every stage), a VGG-like stack to stride 8, width ``w``:

    [conv3x3 w] x2, pool, [conv3x3 2w] x2, pool, [conv3x3 4w] x3, pool, conv3x3 4w, conv3x3 2w
    (B, 3, S, S) -> F (B, 2w, S/8, S/8)

(w = 64 gives CPM's VGG-19 widths 64/128/256 and its 128-channel ``conv4_4_CPM`` output, with fewer
layers: 10 convs instead of 12.) Stage 1 on F: [conv3x3 c] x3, conv1x1 4c, conv1x1 K. Stage t > 1 on
concat(F, B_{t-1}): [conv7x7 c] x3, conv1x1 c, conv1x1 K (CPM uses five 7x7 convs; three keep a
receptive field growth of 144 px per stage at stride 8). c = ``stage_channels`` (128 in CPM).

Differences from the original, deliberately: every conv but each stage's last is followed by BatchNorm
(+ ReLU) so it trains from scratch with Adam; the belief maps have K channels (no background map); no
centre map input (our crops are already hand-centred). It has its own feature extractor and so ignores
the ``backbone`` argument of :func:`~mle_hand_pipeline.methods.build_model`.

Output: heatmaps (B, T, K, S/8, S/8) trained with the heatmap MSE summed over stages (intermediate
supervision); coords decoded by argmax + quarter-cell shift (no gradient), no sigmas.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .integral import argmax_decode
from .outputs import PoseOutput


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """kxk conv ('same' padding) -> BN -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _final_conv(in_channels: int, num_keypoints: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, num_keypoints, kernel_size=1)
    nn.init.normal_(conv.weight, std=0.001)
    nn.init.zeros_(conv.bias)
    return conv


class CPMFeatures(nn.Module):
    """VGG-like image features: (B, 3, S, S) -> (B, 2w, S/8, S/8)."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        w = width
        pool = nn.MaxPool2d(2, 2)
        self.body = nn.Sequential(
            conv_bn_relu(3, w, 3),
            conv_bn_relu(w, w, 3),
            pool,
            conv_bn_relu(w, 2 * w, 3),
            conv_bn_relu(2 * w, 2 * w, 3),
            pool,
            conv_bn_relu(2 * w, 4 * w, 3),
            conv_bn_relu(4 * w, 4 * w, 3),
            conv_bn_relu(4 * w, 4 * w, 3),
            pool,
            conv_bn_relu(4 * w, 4 * w, 3),
            conv_bn_relu(4 * w, 2 * w, 3),
        )
        self.out_channels = 2 * w

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) -> (B, 2w, S/8, S/8)."""
        return self.body(images)


class CPM(nn.Module):
    """Multi-stage CPM with intermediate supervision.

    Args:
        stages: T (CPM uses 6; we default to the paper's 5 for a like-for-like comparison).
        num_keypoints: K.
        width: w of the feature extractor (64 = CPM's VGG widths).
        stage_channels: c, width of every stage (128 in CPM).
        input_size: S (divisible by 8); only recorded and checked.

    Shapes: images (B, 3, S, S) -> PoseOutput(coords (B, T, K, 2), None, heatmaps (B, T, K, S/8, S/8)).
    """

    INPUT_MULTIPLE = 8  # input_size must be a multiple: the features are at S/8

    def __init__(
        self,
        stages: int = 5,
        num_keypoints: int = 21,
        width: int = 64,
        stage_channels: int = 128,
        input_size: int = 256,
    ) -> None:
        super().__init__()
        if stages < 1:
            raise ValueError(f"stages must be >= 1, got {stages}")
        if input_size % self.INPUT_MULTIPLE:
            raise ValueError(f"input_size must be divisible by {self.INPUT_MULTIPLE}, got {input_size}")
        self.features = CPMFeatures(width)
        f, c, k = self.features.out_channels, stage_channels, num_keypoints
        first = nn.Sequential(
            conv_bn_relu(f, c, 3),
            conv_bn_relu(c, c, 3),
            conv_bn_relu(c, c, 3),
            conv_bn_relu(c, 4 * c, 1),
            _final_conv(4 * c, k),
        )
        self.stages = nn.ModuleList([first, *(self._later_stage(f, c, k) for _ in range(stages - 1))])
        self.input_size = input_size
        self.num_keypoints = num_keypoints

    @staticmethod
    def _later_stage(features: int, channels: int, num_keypoints: int) -> nn.Sequential:
        """(B, features + K, h, w) -> (B, K, h, w): three 7x7 convs, a 1x1 conv, the 1x1 output conv."""
        c = channels
        return nn.Sequential(
            conv_bn_relu(features + num_keypoints, c, 7),
            conv_bn_relu(c, c, 7),
            conv_bn_relu(c, c, 7),
            conv_bn_relu(c, c, 1),
            _final_conv(c, num_keypoints),
        )

    def forward(self, images: Tensor) -> PoseOutput:
        """(B, 3, S, S) -> PoseOutput with T stages of belief maps at S/8."""
        features = self.features(images)
        beliefs = [self.stages[0](features)]
        for stage in self.stages[1:]:
            beliefs.append(stage(torch.cat((features, beliefs[-1]), dim=1)))
        maps = torch.stack(beliefs, dim=1)
        with torch.no_grad():
            coords = argmax_decode(maps)
        return PoseOutput(coords, None, maps)
