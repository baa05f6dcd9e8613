"""The training methods: each method's network (:mod:`.models`), loss (:mod:`.losses`) and what the
training code must know of them, in one table (:data:`METHOD_TABLE`).

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
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from torch import nn

from mle_hand_pipeline.losses import HeatmapMSELoss, IntegralL1Loss, MLELoss, RLELoss
from mle_hand_pipeline.models.cpm import CPM
from mle_hand_pipeline.models.heads import DEFAULT_SIGMA_EPS
from mle_hand_pipeline.models.pose_net import SequentialHeatmapNet
from mle_hand_pipeline.models.rle_net import RLENet

logger = logging.getLogger(__name__)


def _paper_network(
    with_variance: bool,
    decode: str,
    backbone: str,
    stages: int,
    input_size: int,
    pretrained: bool,
    head_channels: int,
    num_keypoints: int,
    sigma_eps: float,
    backbone_stride: int,
    decode_window: int,
) -> nn.Module:
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


def _rle_network(
    backbone: str, num_keypoints: int, pretrained: bool, sigma_eps: float, backbone_stride: int, **_: Any
) -> nn.Module:
    return RLENet(
        backbone, num_keypoints, pretrained=pretrained, sigma_eps=sigma_eps, backbone_stride=backbone_stride
    )


def _cpm_network(stages: int, input_size: int, head_channels: int, num_keypoints: int, **_: Any) -> nn.Module:
    return CPM(
        stages,
        num_keypoints,
        width=max(head_channels // 4, 1),
        stage_channels=max(head_channels // 2, 1),
        input_size=input_size,
    )


@dataclass(frozen=True)
class Method:
    """What the training code needs to know of a method: the engine, the parameter checks, the grid and
    the command line read it here instead of asking the model or the loss what they have.

    Attributes:
        network: builds the network from the arguments of :func:`build_model`, all by name (a network
            ignores the ones it has no use for).
        loss: the loss class (:func:`build_loss`).
        has_sigmas: the network predicts per-keypoint sigmas, calibrated into its ``sigma_scale`` by the
            loss' flows (``error_rms``) after every epoch; ``train.sigma_warmup_epochs`` applies
            (``detach_sigma_input``).
        resnet_backbone: its features come from a ResNet: ``model.pretrained`` (ImageNet weights) and
            pretrained backbones (``model.init_checkpoint``) apply.
        input_multiple: ``model.input_size`` must be a multiple of it.
        staged_loss: the loss takes the network's stage count.
    """

    network: Callable[..., nn.Module]
    loss: type[nn.Module]
    has_sigmas: bool
    resnet_backbone: bool
    input_multiple: int
    staged_loss: bool = False


METHOD_TABLE: dict[str, Method] = {
    "mle": Method(
        partial(_paper_network, True, "soft_argmax"),
        MLELoss,
        has_sigmas=True,
        resnet_backbone=True,
        input_multiple=SequentialHeatmapNet.INPUT_MULTIPLE,
        staged_loss=True,
    ),
    "heatmap_l2": Method(
        partial(_paper_network, False, "argmax"),
        HeatmapMSELoss,
        has_sigmas=False,
        resnet_backbone=True,
        input_multiple=SequentialHeatmapNet.INPUT_MULTIPLE,
    ),
    "integral": Method(
        partial(_paper_network, False, "soft_argmax"),
        IntegralL1Loss,
        has_sigmas=False,
        resnet_backbone=True,
        input_multiple=SequentialHeatmapNet.INPUT_MULTIPLE,
    ),
    "rle": Method(_rle_network, RLELoss, has_sigmas=True, resnet_backbone=True, input_multiple=1),
    "cpm": Method(
        _cpm_network,
        HeatmapMSELoss,
        has_sigmas=False,
        resnet_backbone=False,
        input_multiple=CPM.INPUT_MULTIPLE,
    ),
}
METHODS: tuple[str, ...] = tuple(METHOD_TABLE)
# The methods whose features come from a ResNet (CPM has its own feature extractor).
RESNET_METHODS: tuple[str, ...] = tuple(
    name for name, method in METHOD_TABLE.items() if method.resnet_backbone
)


def method_of(name: str) -> Method:
    """The :class:`Method` called ``name``; ``ValueError`` naming the valid ones for another."""
    if name not in METHOD_TABLE:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    return METHOD_TABLE[name]


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
    return method_of(method).network(
        backbone=backbone,
        stages=stages,
        input_size=input_size,
        pretrained=pretrained,
        head_channels=head_channels,
        num_keypoints=num_keypoints,
        sigma_eps=sigma_eps,
        backbone_stride=backbone_stride,
        decode_window=decode_window,
    )


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
    described = method_of(method)
    loss_class = described.loss
    unknown = sorted(set(options) - set().union(*(_loss_options(m.loss) for m in METHOD_TABLE.values())))
    if unknown:
        valid = {name: sorted(_loss_options(m.loss)) for name, m in METHOD_TABLE.items()}
        raise ValueError(f"unknown loss option(s) {unknown}; each method's loss takes: {valid}")
    accepted = _loss_options(loss_class)
    ignored = sorted(set(options) - accepted)
    if ignored:
        logger.debug("loss options %s do not apply to %s (%s); ignored", ignored, method, loss_class.__name__)
    kwargs = {k: v for k, v in options.items() if k in accepted}
    return loss_class(stages, **kwargs) if described.staged_loss else loss_class(**kwargs)


def _loss_options(loss_class: type[nn.Module]) -> set[str]:
    """The keyword options of ``loss_class`` (``stages`` is an argument of build_loss itself)."""
    if loss_class.__init__ is nn.Module.__init__:
        return set()
    return set(inspect.signature(loss_class.__init__).parameters) - {"self", "stages"}
