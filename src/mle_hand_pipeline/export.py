"""Models packaged for use outside this project (MLflow model, ONNX)."""

from __future__ import annotations

import numpy as np
import torch
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec
from torch import nn

from mle_hand_pipeline.models.pose_net import InferenceWrapper


class PackedKeypoints(nn.Module):
    """Stage-T prediction as ONE tensor (B, K, 4) = (x, y, sigma_x, sigma_y) in input-crop pixels.

    One output tensor is what MLflow's PyTorch pyfunc and most serving tools expect. Input: (B, 3, S, S)
    crops normalised with ImageNet mean/std (see ``training.augment.normalise``).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.inference = InferenceWrapper(model)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        coords, sigmas = self.inference(images)
        return torch.cat([coords, sigmas], dim=-1)


def packed_signature(input_size: int, num_keypoints: int = 21) -> ModelSignature:
    """MLflow signature of :class:`PackedKeypoints` with a dynamic batch axis."""
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, input_size, input_size))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, num_keypoints, 4))]),
    )
