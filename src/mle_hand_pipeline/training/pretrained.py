"""Backbone checkpoints: the pretrained regime without downloads (issue 12).

The ``pretrain_<dataset>`` pipeline trains a network with a plain objective on a separate synthetic
set and keeps only its ResNet backbone in a small file (:func:`backbone_checkpoint`)::

    {"format": "mle_hand_pipeline.backbone/1", "backbone": "resnet18",
     "weights": {"body.conv1.weight": Tensor, ...},   # ResNetBackbone.state_dict()
     "info": {...}}                                  # where it came from (JSON-able)

It loads with ``torch.load(weights_only=True)``. Any ResNet-based method (mle, integral, heatmap_l2,
rle) starts from it through ``model.init_checkpoint`` (:func:`load_backbone`, called by
``training.engine.warm_start``): the backbone gets the weights, the heads keep their fresh
initialisation. This is the same regime as ``model.pretrained: true`` (ImageNet weights) on real
data: a trained feature extractor, task heads from scratch.

CPM has its own feature extractor (``models.cpm.CPMFeatures``), not a ResNet: a backbone checkpoint
does not apply to it, so CPM trains from scratch in both regimes; :func:`load_backbone` says so in
the log and leaves the model untouched, so one command line serves every method of a comparison.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from mle_hand_pipeline.models.backbone import ResNetBackbone

logger = logging.getLogger(__name__)

BACKBONE_FORMAT = "mle_hand_pipeline.backbone/1"


def resnet_backbone(model: nn.Module) -> ResNetBackbone | None:
    """The model's ResNet feature extractor (``model.backbone``), or None (CPM)."""
    backbone = getattr(model, "backbone", None)
    return backbone if isinstance(backbone, ResNetBackbone) else None


def backbone_checkpoint(model: nn.Module, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The backbone-checkpoint dict of ``model`` (weights copied to the CPU).

    Args:
        model: a ResNet-based network (``model.backbone`` is a :class:`ResNetBackbone`).
        info: JSON-able facts about its origin (method, data, seed, epochs, validation scores).

    Raises:
        ValueError: if the model has no ResNet backbone.
    """
    backbone = resnet_backbone(model)
    if backbone is None:
        raise ValueError(
            f"{type(model).__name__} has no ResNet backbone to save; pretrain with a ResNet-based method "
            "(integral, heatmap_l2, mle, rle)"
        )
    return {
        "format": BACKBONE_FORMAT,
        "backbone": backbone.name,
        "weights": {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()},
        "info": dict(info or {}),
    }


def _beyond(key: str, backbone: ResNetBackbone) -> bool:
    """Whether weight ``key`` ("body.layer4.0.conv1.weight") belongs to a ResNet stage ``backbone`` drops."""
    parts = key.split(".")
    return len(parts) > 1 and parts[0] == "body" and parts[1] not in backbone.body._modules


def is_backbone_checkpoint(state: dict[str, Any]) -> bool:
    """Whether a loaded checkpoint is a backbone checkpoint (not a run's ``best.pt``/``last.pt``)."""
    return isinstance(state, dict) and state.get("format") == BACKBONE_FORMAT


def load_backbone(model: nn.Module, state: dict[str, Any], path: str | Path, log: bool = True) -> bool:
    """Copy a backbone checkpoint's weights into ``model.backbone``; every other weight is untouched.

    Args:
        model: the freshly initialised network.
        state: the loaded backbone checkpoint (:func:`is_backbone_checkpoint`).
        path: its file, for messages.
        log: log what was loaded (rank 0 only in DDP).

    Returns:
        True if loaded; False for a model without a ResNet backbone (CPM), which keeps its fresh
        weights (logged as a warning).

    Raises:
        ValueError: naming both architectures when the checkpoint's ResNet differs from the model's,
            or the tensors that do not fit.
    """
    backbone = resnet_backbone(model)
    if backbone is None:
        if log:
            logger.warning(
                "model.init_checkpoint=%s is a ResNet backbone checkpoint, but %s has its own feature "
                "extractor: nothing loaded, it trains from scratch (as it does in every regime)",
                path,
                type(model).__name__,
            )
        return False
    if state["backbone"] != backbone.name:
        raise ValueError(
            f"{path}: a {state['backbone']} backbone checkpoint cannot initialise a {backbone.name} model; "
            f"set model.backbone={state['backbone']} or pretrain a {backbone.name}"
        )
    own = backbone.state_dict()
    # A backbone that stops early (model.backbone_stride 16 or 8) takes the layers it has; the
    # checkpoint's deeper layers are not this model's (a missing layer is still an error below).
    weights = {k: v for k, v in state["weights"].items() if k in own or not _beyond(k, backbone)}
    missing, unexpected = backbone.load_state_dict(weights, strict=False)
    if missing or unexpected:
        hint = (
            "; the checkpoint's ResNet stops earlier than this model's: pretrain with the run's "
            "model.backbone_stride (pretrain_<dataset>.model.backbone_stride)"
            if missing
            else ""
        )
        raise ValueError(
            f"{path}: backbone weights do not fit: missing {missing}, unexpected {unexpected}{hint}"
        )
    if log:
        info = state.get("info") or {}
        heads = sum(1 for k in model.state_dict() if not k.startswith("backbone."))
        logger.info(
            "init from backbone checkpoint %s: %d %s backbone tensors loaded (pretrained with %s); "
            "%d head tensors start fresh",
            path,
            len(weights),
            backbone.name,
            info.get("method", "an unknown method"),
            heads,
        )
    return True
