"""The paper's sequential heatmap model, and the inference wrapper shared by every method.

``SequentialHeatmapNet`` (Section III-A): a ResNet backbone computes global features once; T stages
(:class:`~mle_hand_pipeline.models.heads.PoseStage`) all read those same features, stage t > 1 also the
heatmaps of stage t - 1. Each stage yields K heatmaps at S/4 and, for the MLE method, K (sigma_x,
sigma_y) pairs; coordinates come from soft-argmax (integral regression) of each stage's maps.

The same network serves two baselines: ``with_variance=False`` for integral regression (soft-argmax,
L1 loss) and ``with_variance=False, decode="argmax"`` for heatmap L2 (argmax + quarter-cell shift).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .backbone import ResNetBackbone
from .heads import DEFAULT_SIGMA_EPS, PoseStage
from .integral import argmax_decode, local_soft_argmax, soft_argmax
from .outputs import PoseOutput

DECODERS = ("soft_argmax", "argmax")


class SequentialHeatmapNet(nn.Module):
    """Shared backbone + T refinement stages.

    Args:
        backbone: a name ("resnet18", "resnet34", "resnet50") or a module mapping (B, 3, S, S) to
            (B, C, S/s, S/s) with an ``out_channels`` attribute (and ``stride`` = s, when not 32).
        stages: T (5 in the paper).
        input_size: S, the crop size (divisible by 32). Only recorded (``self.input_size``) and checked;
            the network itself runs at any multiple of 32.
        backbone_stride: s of a backbone given by name: 32 (the paper), 16 or 8 (the ResNet stops
            after ``layer3`` or ``layer2``). The heads upsample by s/4, so the maps are at S/4 always.
        head_channels: c, the width of every stage (256 in the paper).
        num_keypoints: K.
        with_variance: predict sigmas (the MLE method); otherwise ``sigmas`` is None.
        decode: "soft_argmax" (differentiable, the paper's Eq. 1) or "argmax" (heatmap-L2 decoding,
            computed without gradient).
        pretrained: ImageNet weights for a backbone given by name.
        sigma_eps: added to the variance head's sigmoid.
        decode_window: with ``decode="soft_argmax"``: 0 (the paper) takes the expectation over the
            whole map; r >= 1 over the (2r+1)^2 cells around its argmax (:func:`local_soft_argmax`),
            which keeps mass far from the peak from pulling the keypoint towards the map's centre.

    Shapes: images (B, 3, S, S) -> PoseOutput(coords (B, T, K, 2), sigmas (B, T, K, 2) | None,
    heatmaps (B, T, K, S/4, S/4)).

    Buffer ``sigma_scale`` (T, 2), only with ``with_variance``: the flows' RMS per unit of sigma (see
    ``losses/mle.py``), ones until a trainer sets it. ``forward`` returns raw sigmas (the loss needs
    them); :class:`InferenceWrapper` and ``training.inference.predict_crops`` report
    ``sigma * sigma_scale``, the predicted RMS error.

    Attribute ``detach_sigma_input`` (default False): when True, each variance head sees its stage
    input detached, so the backbone and the stage convolutions learn from the coordinates' gradient
    only while the variance heads (and the loss's flows) keep learning. Forward values are unchanged.
    Trainers set it for a warm-up from scratch (``train.sigma_warmup_epochs``): at initialisation the
    sigma terms' share of the backbone gradient is about 40x the coordinates' (ResNet-18, 64 and 128
    px), and without the warm-up the model stays at one mean pose (both measured in docs/results.md,
    "Why it did not learn before").
    """

    INPUT_MULTIPLE = 32  # input_size must be a multiple: the ResNet halves it 5 times

    def __init__(
        self,
        backbone: str | nn.Module = "resnet50",
        stages: int = 5,
        input_size: int = 256,
        head_channels: int = 256,
        num_keypoints: int = 21,
        with_variance: bool = True,
        decode: str = "soft_argmax",
        pretrained: bool = False,
        sigma_eps: float = DEFAULT_SIGMA_EPS,
        backbone_stride: int = 32,
        decode_window: int = 0,
    ) -> None:
        super().__init__()
        if decode_window < 0:
            raise ValueError(f"decode_window must be >= 0, got {decode_window}")
        if stages < 1:
            raise ValueError(f"stages must be >= 1, got {stages}")
        if input_size % self.INPUT_MULTIPLE:
            raise ValueError(f"input_size must be divisible by {self.INPUT_MULTIPLE}, got {input_size}")
        if decode not in DECODERS:
            raise ValueError(f"unknown decode {decode!r}; valid: {', '.join(DECODERS)}")
        if isinstance(backbone, str):
            backbone = ResNetBackbone(backbone, pretrained, backbone_stride)
        self.backbone = backbone
        self.stages = nn.ModuleList(
            PoseStage(
                self.backbone.out_channels,
                head_channels,
                num_keypoints,
                first=t == 0,
                with_variance=with_variance,
                sigma_eps=sigma_eps,
                map_scale=getattr(self.backbone, "stride", 32) // 4,
            )
            for t in range(stages)
        )
        self.input_size = input_size
        self.num_keypoints = num_keypoints
        self.with_variance = with_variance
        self.decode = decode
        self.decode_window = decode_window
        self.detach_sigma_input = False
        self.register_buffer("sigma_scale", torch.ones(stages, 2) if with_variance else None)

    def forward(self, images: Tensor) -> PoseOutput:
        """(B, 3, S, S) ImageNet-normalised images -> PoseOutput with T stages."""
        features = self.backbone(images)
        heatmaps: list[Tensor] = []
        sigmas: list[Tensor] = []
        prev = None
        for stage in self.stages:
            prev, sigma = stage(features, prev, self.detach_sigma_input)
            heatmaps.append(prev)
            if sigma is not None:
                sigmas.append(sigma)
        maps = torch.stack(heatmaps, dim=1)
        if self.decode == "soft_argmax" and self.decode_window:
            coords = local_soft_argmax(maps, self.decode_window)
        elif self.decode == "soft_argmax":
            coords = soft_argmax(maps)
        else:
            with torch.no_grad():
                coords = argmax_decode(maps)
        return PoseOutput(coords, torch.stack(sigmas, dim=1) if sigmas else None, maps)


class InferenceWrapper(nn.Module):
    """Last-stage prediction in crop pixels, for any model returning :class:`PoseOutput`.

    Used for ONNX export and MLflow model logging: ``forward(images)`` returns plain tensors
    ``(coords_px (B, K, 2), sigmas_px (B, K, 2))`` of stage T only, where
    ``x_px = (u + 0.5) * W`` and ``sigma_px = sigma * sigma_scale[T] * W`` (``y`` with ``H``), W and H
    the input's width and height: the predicted RMS error per coordinate (:func:`error_sigmas`).
    ``sigmas_px`` is zeros for methods without uncertainty (heatmap_l2, integral, cpm). Put the model
    in ``eval()`` mode first.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) -> coords_px (B, K, 2), sigmas_px (B, K, 2), float32."""
        out: PoseOutput = self.model(images)
        height, width = images.shape[-2:]
        scale = torch.tensor([width, height], dtype=torch.float32, device=images.device)
        coords = (out.coords[:, -1].float() + 0.5) * scale
        if out.sigmas is None:
            sigmas = torch.zeros_like(coords)
        else:
            sigmas = error_sigmas(self.model, out.sigmas)[:, -1] * scale
        return coords, sigmas


def error_sigmas(model: nn.Module, sigmas: Tensor) -> Tensor:
    """Raw sigmas (B, T, K, 2) of ``model`` -> predicted RMS errors (B, T, K, 2) float32, same units.

    Multiplies by the model's ``sigma_scale`` (T, 2) buffer when it has one (models trained before it
    existed, or by hand, return their raw sigmas).
    """
    scale = getattr(model, "sigma_scale", None)
    sigmas = sigmas.float()
    return sigmas if scale is None else sigmas * scale[:, None, :].float()
