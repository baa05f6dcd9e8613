"""The RLE loss (Li et al., ICCV 2021) for the single-stage RLE network.

It is :class:`~mle_hand_pipeline.losses.mle.MLELoss` with one flow and the residual Laplace term on by
default, i.e. per visible keypoint (see ``mle.py`` for the exact formula and how it differs from the
RLE reference code's constants and normalisation)::

    eps = (mu_g - mu_hat) / sigma
    l   = -log G_phi(eps) + |eps_x| + |eps_y| + 2 log 2 + log sigma_x + log sigma_y

averaged over visible keypoints.
"""

from __future__ import annotations

from ..models.heads import DEFAULT_SIGMA_EPS
from .mle import MLELoss


class RLELoss(MLELoss):
    """``MLELoss(stages=1, residual="laplace")``; same call and result.

    Args:
        residual: "laplace" (default, RLE), "gaussian" or "none".
        sigma_eps, flow_init, flow_layers: as for :class:`MLELoss`.
    """

    def __init__(
        self,
        residual: str = "laplace",
        sigma_eps: float = DEFAULT_SIGMA_EPS,
        flow_init: str = "identity",
        flow_layers: int = 6,
    ) -> None:
        super().__init__(
            stages=1, residual=residual, sigma_eps=sigma_eps, flow_init=flow_init, flow_layers=flow_layers
        )
