"""The RLE baseline network (Li et al., ICCV 2021): direct regression of coordinates and sigmas.

backbone features (B, C, S/s, S/s) -> global avg pool (B, C) -> two Linear layers:
``coords = fc_coord(.)`` (K*2, no activation, normalised units) and
``sigmas = sigmoid(fc_sigma(.)) + sigma_eps`` (K*2). One stage (T = 1), no heatmaps.

Both Linear layers start from xavier-uniform weights with gain 0.01 and zero bias (as RLE's
``_initialize``), so predictions start at the crop centre with sigma 0.5. Difference from the reference
code: RLE's ``fc_coord`` divides its input by its L2 norm (a "normalised Linear"); here it is a plain
``nn.Linear`` as in the paper's description of the baseline.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .backbone import ResNetBackbone
from .heads import DEFAULT_SIGMA_EPS
from .outputs import PoseOutput


class RLENet(nn.Module):
    """ResNet + global pool + FC regression of (x, y) and (sigma_x, sigma_y) per keypoint.

    Args:
        backbone: a backbone name or module (with ``out_channels``), as for ``SequentialHeatmapNet``.
        num_keypoints: K.
        pretrained: ImageNet weights for a named backbone.
        sigma_eps: added to the sigmoid of the sigma layer.
        backbone_stride: s of a backbone given by name (32, 16 or 8, as for ``SequentialHeatmapNet``).

    Shapes: images (B, 3, S, S) -> PoseOutput(coords (B, 1, K, 2), sigmas (B, 1, K, 2), heatmaps None).

    Buffer ``sigma_scale`` (1, 2): the flow's RMS per unit of sigma, as in ``SequentialHeatmapNet``.

    Attribute ``detach_sigma_input`` (default False): stop ``fc_sigma``'s gradient at the pooled
    features, as in ``SequentialHeatmapNet`` (the sigma warm-up).
    """

    def __init__(
        self,
        backbone: str | nn.Module = "resnet50",
        num_keypoints: int = 21,
        pretrained: bool = False,
        sigma_eps: float = DEFAULT_SIGMA_EPS,
        backbone_stride: int = 32,
    ) -> None:
        super().__init__()
        if isinstance(backbone, str):
            backbone = ResNetBackbone(backbone, pretrained, backbone_stride)
        self.backbone = backbone
        channels = self.backbone.out_channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc_coord = nn.Linear(channels, 2 * num_keypoints)
        self.fc_sigma = nn.Linear(channels, 2 * num_keypoints)
        for fc in (self.fc_coord, self.fc_sigma):
            nn.init.xavier_uniform_(fc.weight, gain=0.01)
            nn.init.zeros_(fc.bias)
        self.num_keypoints = num_keypoints
        self.sigma_eps = sigma_eps
        self.detach_sigma_input = False
        self.register_buffer("sigma_scale", torch.ones(1, 2))

    def forward(self, images: Tensor) -> PoseOutput:
        """(B, 3, S, S) -> PoseOutput with T = 1."""
        feat = self.pool(self.backbone(images)).flatten(1)
        shape = (-1, 1, self.num_keypoints, 2)
        coords = self.fc_coord(feat).reshape(shape)
        sigma_feat = feat.detach() if self.detach_sigma_input else feat
        sigmas = (self.fc_sigma(sigma_feat).sigmoid() + self.sigma_eps).reshape(shape)
        return PoseOutput(coords, sigmas, None)
