"""The training methods: each method's network (:mod:`.models`) and loss (:mod:`.losses`) by name.

This module sits above both packages (the losses import ``models.outputs``/``models.flow``, so the
models package cannot import the losses). Methods:

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

import inspect
import logging
from typing import Any

from torch import nn

from mle_hand_pipeline.losses import HeatmapMSELoss, IntegralL1Loss, MLELoss, RLELoss
from mle_hand_pipeline.models.cpm import CPM
from mle_hand_pipeline.models.heads import DEFAULT_SIGMA_EPS
from mle_hand_pipeline.models.pose_net import SequentialHeatmapNet
from mle_hand_pipeline.models.rle_net import RLENet

logger = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("mle", "heatmap_l2", "integral", "rle", "cpm")

# The methods built on the paper's network: (variance head, coordinate decoding) of each.
SEQUENTIAL_HEATMAP_METHODS: dict[str, tuple[bool, str]] = {
    "mle": (True, "soft_argmax"),
    "integral": (False, "soft_argmax"),
    "heatmap_l2": (False, "argmax"),
}
# The methods whose features come from a ResNet: ImageNet weights (``model.pretrained``) and pretrained
# backbones (``model.init_checkpoint``) apply to them. CPM has its own feature extractor.
RESNET_METHODS: tuple[str, ...] = (*SEQUENTIAL_HEATMAP_METHODS, "rle")


def _unknown(method: str) -> ValueError:
    return ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")


def input_multiple(method: str) -> int:
    """What ``model.input_size`` must be a multiple of for ``method``'s network (1: any size)."""
    if method in SEQUENTIAL_HEATMAP_METHODS:
        return SequentialHeatmapNet.INPUT_MULTIPLE
    return CPM.INPUT_MULTIPLE if method == "cpm" else 1


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
    backbone_stride: int = 32,
    decode_window: int = 0,
) -> nn.Module:
    """The network of ``method``; its ``forward(images (B, 3, S, S))`` returns a ``PoseOutput``.

    - "mle" / "integral" / "heatmap_l2": the paper's T-stage network on ``backbone``.
    - "rle": ``backbone`` + global pool + FC; ``stages`` and ``head_channels`` are ignored (T = 1).
    - "cpm": ignores ``backbone``, ``backbone_stride`` and ``pretrained`` (its own features are at
      S/8); ``head_channels`` sets its widths: feature width ``head_channels // 4`` and stage width
      ``head_channels // 2`` (256 gives CPM's original 64 / 128).

    ``sigma_eps`` (keyword only) is added to the sigmoid of the sigma heads of "mle" and "rle".
    ``backbone_stride`` (keyword only): where the ResNet stops, 32 (all of it, the paper), 16 or 8.
    ``decode_window`` (keyword only): soft-argmax over the whole map (0, the paper) or over the
    (2r+1)^2 cells around its argmax (r); for "mle" and "integral", ignored by the others.
    """
    if method in SEQUENTIAL_HEATMAP_METHODS:
        with_variance, decode = SEQUENTIAL_HEATMAP_METHODS[method]
        return SequentialHeatmapNet(
            backbone,
            stages,
            input_size,
            head_channels,
            num_keypoints,
            with_variance=with_variance,
            decode=decode,
            pretrained=pretrained,
            sigma_eps=sigma_eps,  # used by the variance head only
            backbone_stride=backbone_stride,
            decode_window=decode_window if decode == "soft_argmax" else 0,
        )
    elif method == "rle":
        return RLENet(
            backbone,
            num_keypoints,
            pretrained=pretrained,
            sigma_eps=sigma_eps,
            backbone_stride=backbone_stride,
        )
    elif method == "cpm":
        return CPM(
            stages,
            num_keypoints,
            width=max(head_channels // 4, 1),
            stage_channels=max(head_channels // 2, 1),
            input_size=input_size,
        )
    raise _unknown(method)


def build_loss(method: str, stages: int, **options: Any) -> nn.Module:
    """The training loss of ``method``: ``loss(output, target (B, K, 2), visible (B, K)) -> LossResult``.

    ``options`` go to the loss class:

    - "mle": ``residual`` ("none" | "laplace" | "gaussian", default "none"), ``sigma_eps``, ``flow_init``
      ("identity" | "default"), ``flow_layers``.
    - "rle": the same, default ``residual="laplace"``; ``stages`` is ignored (the RLE net has T = 1).
    - "heatmap_l2", "cpm": ``sigma_at_64`` (target Gaussian sigma in cells of a 64-cell map, default 2).
    - "integral": none.

    One ``model.loss`` block serves every method of a comparison, so an option that another method's
    loss takes (say ``residual`` for "integral") is ignored, with a debug log; a name that no loss
    takes is a typo and raises ``ValueError``.
    """
    loss_class = _loss_class(method)
    unknown = sorted(set(options) - set().union(*(_loss_options(_loss_class(m)) for m in METHODS)))
    if unknown:
        valid = {m: sorted(_loss_options(_loss_class(m))) for m in METHODS}
        raise ValueError(f"unknown loss option(s) {unknown}; each method's loss takes: {valid}")
    accepted = _loss_options(loss_class)
    ignored = sorted(set(options) - accepted)
    if ignored:
        logger.debug("loss options %s do not apply to %s (%s); ignored", ignored, method, loss_class.__name__)
    kwargs = {k: v for k, v in options.items() if k in accepted}
    return loss_class(stages, **kwargs) if method == "mle" else loss_class(**kwargs)


def _loss_class(method: str) -> type[nn.Module]:
    if method == "mle":
        return MLELoss
    elif method == "rle":
        return RLELoss
    elif method in ("heatmap_l2", "cpm"):
        return HeatmapMSELoss
    elif method == "integral":
        return IntegralL1Loss
    raise _unknown(method)


def _loss_options(loss_class: type[nn.Module]) -> set[str]:
    """The keyword options of ``loss_class`` (``stages`` is an argument of build_loss itself)."""
    if loss_class.__init__ is nn.Module.__init__:
        return set()
    return set(inspect.signature(loss_class.__init__).parameters) - {"self", "stages"}
