"""One stage of the paper's sequential heatmap model (Section III-A-2): input fusion + two heads.

Per stage, with backbone features F (B, C, f, f) (f = S/32 in the paper) and, for t > 1, the previous
stage's heatmaps H_{t-1} (B, K, m*f, m*f) (m = 8 in the paper, so that the maps are at S/4):

- stage input X = ReLU(BN(conv1x1_{C->c}(F)))                                   (B, c, f, f)    t = 1
  X = concat(ReLU(BN(conv1x1_{C->c}(F))), ReLU(BN(conv1x1_{K->c}(avgpool_mxm(H_{t-1})))))  (B, 2c, f, f)
  (avgpool_mxm, kernel = stride = m, is exactly adaptive avg pooling of the m*f maps to f x f)
- heatmap head: log2(m) x [ConvTranspose2d(k4, s2, p1) -> BN -> ReLU] (f -> m*f, c channels),
  then conv1x1_{c->K} (no BN/ReLU)                                              (B, K, m*f, m*f)
- variance head: global avg pool of X -> Linear -> BN1d -> ReLU -> Linear -> 2K,
  sigma = sigmoid(.) + sigma_eps                                                 (B, K, 2)

A backbone of output stride s gives maps at S/4 with m = s/4: 3 deconvolutions at stride 32 (the
paper), 2 at 16, 1 at 8.

``c`` is ``head_channels`` (256 in the paper). "All conv and FC layers except the last are followed by
BN and ReLU", so the fusion convs have BN + ReLU too. The previous stage's heatmaps are passed raw
(logits / regressed maps, not softmax-ed) and with gradient, the paper's "direct gradient path".

``sigma_eps`` (default 1e-4 normalised = 0.026 px at S=256, far below any label's precision) keeps
``1/sigma <= 1e4``: residuals ``(mu_g - mu_hat)/sigma`` then stay finite in float16 (max 65504), which
1e-6 would not guarantee, and it bounds ``log sigma >= -9.2`` so a collapsing sigma cannot run the
loss to -inf.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

DEFAULT_SIGMA_EPS = 1e-4


def conv1x1_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 conv -> BN -> ReLU (B, in, h, w) -> (B, out, h, w)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class HeatmapHead(nn.Module):
    """``num_deconv`` (3 in the paper) stride-2 deconvolutions (each BN + ReLU), a 1x1 conv to K maps.

    (B, in_channels, f, f) -> (B, num_keypoints, 2^n f, 2^n f), n = num_deconv. Deconvs and the final
    conv start from N(0, 0.001) weights (SimpleBaseline / MMPose), so initial maps are almost flat.
    """

    def __init__(self, in_channels: int, channels: int, num_keypoints: int, num_deconv: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_deconv):
            deconv = nn.ConvTranspose2d(
                in_channels if i == 0 else channels, channels, 4, stride=2, padding=1, bias=False
            )
            nn.init.normal_(deconv.weight, std=0.001)
            layers += [deconv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.deconv = nn.Sequential(*layers)
        self.final = nn.Conv2d(channels, num_keypoints, kernel_size=1)
        nn.init.normal_(self.final.weight, std=0.001)
        nn.init.zeros_(self.final.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, f, f) -> (B, K, 2^n f, 2^n f)."""
        return self.final(self.deconv(x))


class VarianceHead(nn.Module):
    """Global avg pool -> Linear -> BN1d -> ReLU -> Linear -> 2K -> sigmoid + sigma_eps.

    (B, in_channels, f, f) -> (B, K, 2) positive sigmas (sigma_x, sigma_y) in normalised units. The last
    Linear starts near zero (xavier, gain 0.01, as in RLE), so initial sigmas are about 0.5.
    """

    def __init__(
        self, in_channels: int, hidden: int, num_keypoints: int, sigma_eps: float = DEFAULT_SIGMA_EPS
    ) -> None:
        super().__init__()
        self.num_keypoints = num_keypoints
        self.sigma_eps = sigma_eps
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(in_channels, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)
        )
        self.out = nn.Linear(hidden, 2 * num_keypoints)
        nn.init.xavier_uniform_(self.out.weight, gain=0.01)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, f, f) -> (B, K, 2)."""
        logits = self.out(self.fc(self.pool(x).flatten(1)))
        return (logits.sigmoid() + self.sigma_eps).reshape(-1, self.num_keypoints, 2)


class PoseStage(nn.Module):
    """One stage: fuse (features, previous heatmaps) and predict heatmaps and, optionally, sigmas.

    Args:
        in_channels: C, backbone channels.
        head_channels: c (256 in the paper).
        num_keypoints: K.
        first: stage 1 (features only) or a later stage (features + previous heatmaps).
        with_variance: build the variance head (MLE); ``False`` for heatmap-L2 / integral baselines.
        sigma_eps: added to the sigmoid of the variance head.
        map_scale: m, heatmap side / feature side: 8 (the paper), 4 or 2; a power of 2.
    """

    def __init__(
        self,
        in_channels: int,
        head_channels: int,
        num_keypoints: int,
        first: bool,
        with_variance: bool = True,
        sigma_eps: float = DEFAULT_SIGMA_EPS,
        map_scale: int = 8,
    ) -> None:
        super().__init__()
        if map_scale < 2 or map_scale & (map_scale - 1):
            raise ValueError(f"map_scale must be a power of 2 >= 2, got {map_scale}")
        self.feature_proj = conv1x1_bn_relu(in_channels, head_channels)
        self.heatmap_pool = None if first else nn.AvgPool2d(kernel_size=map_scale, stride=map_scale)
        self.heatmap_proj = None if first else conv1x1_bn_relu(num_keypoints, head_channels)
        fused = head_channels if first else 2 * head_channels
        self.heatmap_head = HeatmapHead(fused, head_channels, num_keypoints, map_scale.bit_length() - 1)
        self.variance_head = (
            VarianceHead(fused, head_channels, num_keypoints, sigma_eps) if with_variance else None
        )

    def forward(
        self, features: Tensor, prev_heatmaps: Tensor | None = None, detach_sigma_input: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """features (B, C, f, f), prev_heatmaps (B, K, m*f, m*f) or None -> heatmaps (B, K, m*f, m*f), sigmas.

        sigmas is (B, K, 2), or None without a variance head. ``detach_sigma_input`` stops the variance
        head's gradient at its input (the sigma warm-up, see ``SequentialHeatmapNet``).
        """
        x = self.feature_proj(features)
        if self.heatmap_proj is not None:
            if prev_heatmaps is None:
                raise ValueError("a stage after the first needs the previous stage's heatmaps")
            # The maps are exactly m x the feature size, so this equals adaptive avg pooling to the
            # feature size; a fixed kernel also exports to ONNX with a dynamic batch.
            pooled = self.heatmap_pool(prev_heatmaps)
            x = torch.cat((x, self.heatmap_proj(pooled)), dim=1)
        heatmaps = self.heatmap_head(x)
        if self.variance_head is None:
            return heatmaps, None
        return heatmaps, self.variance_head(x.detach() if detach_sigma_input else x)
