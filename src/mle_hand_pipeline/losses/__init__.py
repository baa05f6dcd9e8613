"""Plain-PyTorch losses (no Kedro) for the methods of :mod:`mle_hand_pipeline.models`.

All are called as ``loss(output: PoseOutput, target (B, K, 2), visible (B, K) bool) -> LossResult``
with normalised crop coordinates. Build one by method name with
:func:`mle_hand_pipeline.methods.build_loss`.
"""

from .common import LossResult
from .heatmap import HeatmapMSELoss, gaussian_heatmaps
from .integral import IntegralL1Loss
from .mle import RESIDUALS, MLELoss
from .rle import RLELoss

__all__ = [
    "RESIDUALS",
    "HeatmapMSELoss",
    "IntegralL1Loss",
    "LossResult",
    "MLELoss",
    "RLELoss",
    "gaussian_heatmaps",
]
