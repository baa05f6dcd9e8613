"""The one output type every model in :mod:`mle_hand_pipeline.models` returns.

Coordinate convention (shared by every model and loss): *normalised crop coordinates*
``u = x / S - 0.5`` for a pixel coordinate ``x`` in an ``S x S`` crop, continuous convention (pixel
``i`` covers ``[i, i + 1)``), so ``u`` lies in ``[-0.5, 0.5]`` inside the crop. Sigmas are in the same
normalised units (multiply by ``S`` for pixels).
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class PoseOutput(NamedTuple):
    """What a pose model's ``forward`` returns.

    Attributes:
        coords: (B, T, K, 2) normalised (x, y) per stage; ``T = 1`` for single-stage models. The last
            stage (``coords[:, -1]``) is the prediction.
        sigmas: (B, T, K, 2) positive per-coordinate scales (normalised units), or ``None`` for methods
            without an uncertainty head.
        heatmaps: (B, T, K, h, w) raw per-stage maps (logits for soft-argmax models, regressed maps
            for heatmap-L2/CPM), or ``None`` for direct regression.
    """

    coords: Tensor
    sigmas: Tensor | None = None
    heatmaps: Tensor | None = None
