"""ResNet feature extractor: torchvision ResNet-18/34/50 without its average pool and classifier.

``ResNetBackbone("resnet50")`` maps an image (B, 3, S, S) to features (B, 2048, S/32, S/32)
(512 channels for resnet18/34). ``output_stride`` 16 or 8 stops after ``layer3`` or ``layer2``
(features (B, C/2, S/16, S/16) or (B, C/4, S/8, S/8)): a small crop then still reaches the heads on
the 8x8 grid that the paper's 256-px input gives at stride 32 (64 px at stride 8). ImageNet weights are
loaded only when ``pretrained=True``; nothing is ever downloaded by default.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision import models as tvm

# name -> (constructor, ImageNet weights enum member, output channels)
_RESNETS = {
    "resnet18": (tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1, 512),
    "resnet34": (tvm.resnet34, tvm.ResNet34_Weights.IMAGENET1K_V1, 512),
    "resnet50": (tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V2, 2048),
}

BACKBONES: tuple[str, ...] = tuple(_RESNETS)
# output stride -> the last ResNet stage kept (each stage halves the resolution and doubles the width)
_LAST_LAYER = {32: "layer4", 16: "layer3", 8: "layer2"}
OUTPUT_STRIDES: tuple[int, ...] = tuple(_LAST_LAYER)


def weights_checkpoint_path(name: str) -> str:
    """Where torch hub looks for the ImageNet checkpoint of backbone ``name`` before downloading it."""
    _, weights, _ = _RESNETS[name]
    filename = os.path.basename(urlparse(weights.url).path)
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


def load_imagenet_state_dict(name: str) -> dict[str, Tensor]:
    """The torchvision ImageNet state dict of ``name`` (from the torch hub cache, else downloaded).

    Raises:
        RuntimeError: if the weights can be neither found in the cache nor fetched, with a message
            saying how to turn pretraining off or where to put the file by hand.
    """
    _, weights, _ = _RESNETS[name]
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:  # no network, proxy, corrupt file ...: all need the same advice
        raise RuntimeError(
            f"Could not load the ImageNet weights {weights} for backbone {name!r} ({type(exc).__name__}: "
            f"{exc}). Either train from scratch (set `model.pretrained: false`) or download "
            f"{weights.url} on a machine with internet access and place it at "
            f"{weights_checkpoint_path(name)} (torch.hub.get_dir()/checkpoints/)."
        ) from exc


class ResNetBackbone(nn.Module):
    """A torchvision ResNet up to ``layer4`` (or ``layer3``/``layer2``): (B, 3, S, S) -> (B, C, S/s, S/s).

    Args:
        name: "resnet18", "resnet34" or "resnet50".
        pretrained: load torchvision's ImageNet weights (IMAGENET1K_V1 for 18/34, IMAGENET1K_V2 for 50).
        output_stride: s, 32 (the whole ResNet, the paper), 16 (stop after ``layer3``) or 8 (after
            ``layer2``).

    Attributes:
        out_channels: C (at stride 32: 512 for resnet18/34, 2048 for resnet50; half at 16, a quarter at 8).
        stride: s.
    """

    def __init__(self, name: str = "resnet50", pretrained: bool = False, output_stride: int = 32) -> None:
        super().__init__()
        if name not in _RESNETS:
            raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONES)}")
        if output_stride not in _LAST_LAYER:
            raise ValueError(
                f"unknown output_stride {output_stride!r}; valid: {', '.join(map(str, OUTPUT_STRIDES))}"
            )
        constructor, _, channels = _RESNETS[name]
        net = constructor(weights=None)
        if pretrained:
            net.load_state_dict(load_imagenet_state_dict(name))
        layers = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
        layers = layers[: layers.index(_LAST_LAYER[output_stride]) + 1]
        self.body = nn.Sequential(OrderedDict((layer, getattr(net, layer)) for layer in layers))
        self.name = name
        self.stride = output_stride
        self.out_channels = channels * output_stride // 32

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) normalised images -> (B, C, S/s, S/s) features."""
        return self.body(images)
