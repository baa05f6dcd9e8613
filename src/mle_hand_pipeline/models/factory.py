"""Build a model or its loss by method name. Plain if/elif, no registry.

Methods:

=============  ==========================================  ================================
method         model                                        loss
=============  ==========================================  ================================
"mle"          SequentialHeatmapNet, sigmas, soft-argmax    MLELoss (one RealNVP per stage)
"integral"     SequentialHeatmapNet, soft-argmax            IntegralL1Loss
"heatmap_l2"   SequentialHeatmapNet, argmax decoding        HeatmapMSELoss
"rle"          RLENet (T = 1)                               MLELoss(stages=1, residual="laplace")
"cpm"          CPM (own features, maps at S/8)              HeatmapMSELoss
=============  ==========================================  ================================
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .cpm import CPM
from .heads import DEFAULT_SIGMA_EPS
from .pose_net import SequentialHeatmapNet
from .rle_net import RLENet

METHODS: tuple[str, ...] = ("mle", "heatmap_l2", "integral", "rle", "cpm")


def _unknown(method: str) -> ValueError:
    return ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")


def build_model(
    method: str,
    backbone: str = "resnet50",
    stages: int = 5,
    input_size: int = 256,
    pretrained: bool = False,
    head_channels: int = 256,
    num_keypoints: int = 21,
    *,
    sigma_eps: float = DEFAULT_SIGMA_EPS,
) -> nn.Module:
    """The network of ``method``; its ``forward(images (B, 3, S, S))`` returns a ``PoseOutput``.

    - "mle" / "integral" / "heatmap_l2": the paper's T-stage network on ``backbone``.
    - "rle": ``backbone`` + global pool + FC; ``stages`` and ``head_channels`` are ignored (T = 1).
    - "cpm": ignores ``backbone`` and ``pretrained``; ``head_channels`` sets its widths:
      feature width ``head_channels // 4`` and stage width ``head_channels // 2`` (256 gives CPM's
      original 64 / 128).

    ``sigma_eps`` (keyword only) is added to the sigmoid of the sigma heads of "mle" and "rle".
    """
    if method == "mle":
        return SequentialHeatmapNet(
            backbone,
            stages,
            input_size,
            head_channels,
            num_keypoints,
            with_variance=True,
            decode="soft_argmax",
            pretrained=pretrained,
            sigma_eps=sigma_eps,
        )
    elif method == "integral":
        return SequentialHeatmapNet(
            backbone,
            stages,
            input_size,
            head_channels,
            num_keypoints,
            with_variance=False,
            decode="soft_argmax",
            pretrained=pretrained,
        )
    elif method == "heatmap_l2":
        return SequentialHeatmapNet(
            backbone,
            stages,
            input_size,
            head_channels,
            num_keypoints,
            with_variance=False,
            decode="argmax",
            pretrained=pretrained,
        )
    elif method == "rle":
        return RLENet(backbone, num_keypoints, pretrained=pretrained, sigma_eps=sigma_eps)
    elif method == "cpm":
        return CPM(
            stages,
            num_keypoints,
            width=max(head_channels // 4, 1),
            stage_channels=max(head_channels // 2, 1),
            input_size=input_size,
        )
    raise _unknown(method)


def build_loss(method: str, stages: int, num_keypoints: int = 21, **options: Any) -> nn.Module:
    """The training loss of ``method``: ``loss(output, target (B, K, 2), visible (B, K)) -> LossResult``.

    ``options`` go to the loss class:

    - "mle": ``residual`` ("none" | "laplace" | "gaussian", default "none"), ``sigma_eps``, ``flow_init``
      ("identity" | "default"), ``flow_layers``.
    - "rle": the same, default ``residual="laplace"``; ``stages`` is ignored (the RLE net has T = 1).
    - "heatmap_l2", "cpm": ``sigma_at_64`` (target Gaussian sigma in cells of a 64-cell map, default 2).
    - "integral": none.

    ``num_keypoints`` is accepted for symmetry with :func:`build_model`; no loss needs it.
    """
    # Imported here: the losses import models.outputs/models.flow, so a module-level import would be
    # circular when `mle_hand_pipeline.losses` is imported first.
    from ..losses import HeatmapMSELoss, IntegralL1Loss, MLELoss, RLELoss

    del num_keypoints
    if method == "mle":
        return MLELoss(stages, **options)
    elif method == "rle":
        return RLELoss(**options)
    elif method in ("heatmap_l2", "cpm"):
        return HeatmapMSELoss(**options)
    elif method == "integral":
        return IntegralL1Loss(**options)
    raise _unknown(method)
