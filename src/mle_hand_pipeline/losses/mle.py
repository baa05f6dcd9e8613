r"""The paper's MLE loss (Section III-B, Eqs. 3-6), with one RealNVP per stage.

Exact formula. For stage t = 1..T, keypoint k of sample b, with predicted normalised coordinates
``mu_hat[b,t,k] in R^2``, sigmas ``sigma[b,t,k] = (sigma_x, sigma_y) > 0`` and label ``mu_g[b,k]``::

    eps[b,t,k]  = (mu_g[b,k] - mu_hat[b,t,k]) / sigma[b,t,k]                 (2-D, per coordinate)
    l[b,t,k]    = -log P_t(eps[b,t,k]) + log sigma_x[b,t,k] + log sigma_y[b,t,k]
                  - [residual] (log Q(eps_x) + log Q(eps_y))
    L_t         = sum_{b,k visible} l[b,t,k] / max(1, #visible keypoints in the batch)
    L           = sum_t L_t

where ``log P_t`` is the log-density of stage t's 2-D RealNVP (``RealNVP.log_prob``: ``z = f_t^-1(eps)``,
``log N(z; 0, I_2) + log|det dz/deps|``; all T flows run in one batched pass, ``stacked_log_prob``),
and the optional residual term uses a standard density per
coordinate:

- ``residual="none"`` (default): no Q term, the paper's Eq. 5.
- ``residual="laplace"``: ``-log Q(e) = |e| + log 2`` (standard Laplace, density ``exp(-|e|) / 2``).
- ``residual="gaussian"``: ``-log Q(e) = e^2 / 2 + log(2 pi) / 2`` (standard normal).

Option ``heatmap_prior`` (weight lambda >= 0, default 0: the paper's loss) adds
``lambda * KL(G_t || softmax(H_t))`` per visible keypoint and stage (:mod:`.heatmap_prior`): a Gaussian
prior on the soft-argmax maps of width ``sigma_at_64``, which removes the pull of flat maps towards
the map's centre; the flows' likelihood still decides the position.

The residual form is RLE's "residual log-likelihood": ``P(eps) proportional to G_phi(eps) Q(eps)``,
so the flow only learns the correction to Q (the normaliser of ``G_phi Q`` is dropped, as in RLE).
The value is a negative log-likelihood in normalised units and can be negative. The flows are part of
this module (training only): give ``loss.parameters()`` to the optimiser together with the model's.

Differences from the RLE reference code (Jeff-sjtu/res-loglikelihood-regression, ``regression_nf.py``
and ``criterion.py``; MMPose's ``RLELoss`` copies it):

- RLE computes ``nf_loss = log(sigma) - log_phi`` with ``sigma`` (B, K, 2) and ``log_phi`` (B, K, 1):
  the broadcast counts the 2-D flow log-density twice per keypoint (once per coordinate). Its
  ``logQ = log(sigma * sqrt(2 pi)) + |e| / sqrt(2)`` then adds ``log sigma`` a second time, with a
  Laplace of scale sqrt(2) under a Gaussian normaliser. Per keypoint RLE's value is
  ``2 (log sigma_x + log sigma_y - log phi(e)) + (|e_x| + |e_y|) / sqrt(2) + log(2 pi)``.
- RLE divides the sum over keypoints by the batch size only, so the loss grows with K and with the
  fraction of labelled keypoints; its ``eps`` is ``(mu_hat - mu_g) / sigma`` (the opposite sign; the
  flow can learn either).

We count each keypoint's 2-D density once (the likelihood of one 2-D label), with ``log sigma`` once per
coordinate (the Jacobian of ``mu -> eps``), and average over visible keypoints, so the loss scale is
independent of batch size, K and visibility, and all T stages weigh the same.

What sigma means: the loss identifies only the product of sigma and the flow's own spread (widen every
sigma and narrow the flow by the same factor and the likelihood is unchanged), so the raw sigma is a
scale without units of error. :meth:`MLELoss.error_rms` gives each stage's RMS of ``eps`` under its
learned density; ``sigma * error_rms`` is the predicted RMS error per coordinate. Trainers copy it into
the model's ``sigma_scale`` buffer, which inference applies.

Numerics: computed in float32 with autocast disabled; sigmas are floored at ``sigma_eps`` (a no-op
for this library's models, which already add the same eps to their sigmoid); invisible keypoints get
``eps = 0`` before the flow, so garbage labels cannot produce NaN. Clip gradients in the trainer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..models.flow import RealNVP, stacked_log_prob
from ..models.heads import DEFAULT_SIGMA_EPS
from ..models.outputs import PoseOutput
from .common import LossResult, check_inputs, float32_region, masked_stage_mean, safe_target
from .heatmap_prior import check_prior, prior_term

RESIDUALS = ("none", "laplace", "gaussian")


class MLELoss(nn.Module):
    """Sum over stages of the flow negative log-likelihood of the normalised residual.

    Args:
        stages: T, one RealNVP per stage (must equal the model's number of stages).
        residual: "none" (paper, default), "laplace" or "gaussian" (RLE's residual form).
        sigma_eps: floor for sigmas (normalised units).
        flow_init: "identity" (default, MMPose) or "default" (PyTorch init, RLE's own code).
        flow_layers: coupling layers per flow (6).
        heatmap_prior: weight of the Gaussian prior on each stage's softmax maps (0: off, the paper).
        sigma_at_64: the prior's sigma, in cells of a 64-cell map (scaled with the map).

    Call: ``loss(output, target (B, K, 2), visible (B, K) bool) -> LossResult`` with
    ``output.sigmas`` not None and ``output.coords.shape[1] == stages``.
    """

    def __init__(
        self,
        stages: int = 5,
        residual: str = "none",
        sigma_eps: float = DEFAULT_SIGMA_EPS,
        flow_init: str = "identity",
        flow_layers: int = 6,
        heatmap_prior: float = 0.0,
        sigma_at_64: float = 2.0,
    ) -> None:
        super().__init__()
        check_prior(heatmap_prior, sigma_at_64)
        if residual not in RESIDUALS:
            raise ValueError(f"unknown residual {residual!r}; valid: {', '.join(RESIDUALS)}")
        if stages < 1:
            raise ValueError(f"stages must be >= 1, got {stages}")
        self.flows = nn.ModuleList(RealNVP(flow_layers, flow_init) for _ in range(stages))
        self.residual = residual
        self.sigma_eps = sigma_eps
        self.heatmap_prior = heatmap_prior
        self.sigma_at_64 = sigma_at_64

    @torch.no_grad()
    def error_rms(self, num_samples: int = 1 << 16, seed: int = 0) -> Tensor:
        """Per stage, the RMS of each coordinate of ``eps`` under the learned density: (T, 2) float32.

        ``residual="none"``: the flow's density, from ``num_samples`` samples. Residual forms: the
        density proportional to ``G_phi(eps) Q(eps)``, by self-normalised importance sampling from ``Q``
        (weights ``G_phi``). Seeded, so the same flows give the same numbers on any device.
        """
        generator = torch.Generator().manual_seed(seed)
        rms = []
        for flow in self.flows:
            if self.residual == "none":
                eps, weights = flow.sample(num_samples, generator).float(), None
            else:
                if self.residual == "laplace":
                    uniform = torch.rand(num_samples, 2, generator=generator) * 2 - 1
                    eps = -uniform.sign() * torch.log1p(-uniform.abs().clamp_max(1 - 1e-7))
                else:
                    eps = torch.randn(num_samples, 2, generator=generator)
                eps = eps.to(flow.masks.device)
                weights = torch.softmax(flow.log_prob(eps).float(), dim=0)[:, None]
            second_moment = eps.square().mean(dim=0) if weights is None else (weights * eps.square()).sum(0)
            rms.append(second_moment.sqrt())
        return torch.stack(rms)

    def neg_log_likelihood(self, coords: Tensor, sigmas: Tensor, target: Tensor, visible: Tensor) -> Tensor:
        """Per-keypoint loss ``l`` (B, T, K), float32 (invisible entries are finite but meaningless).

        coords, sigmas (B, T, K, 2); target (B, K, 2); visible (B, K) bool.
        """
        b, _, k, _ = coords.shape
        mu_hat = coords.float()
        sigma = sigmas.float().clamp_min(self.sigma_eps)
        mu_g = safe_target(target[:, None], visible[:, None], mu_hat.detach())
        eps = (mu_g - mu_hat) / sigma
        stages = len(self.flows)
        log_p = stacked_log_prob(self.flows, eps.transpose(0, 1).reshape(stages, b * k, 2))
        log_p = log_p.reshape(stages, b, k).transpose(0, 1)
        nll = -log_p + sigma.log().sum(dim=-1)
        if self.residual == "laplace":
            nll = nll + (eps.abs() + math.log(2.0)).sum(dim=-1)
        elif self.residual == "gaussian":
            nll = nll + (0.5 * eps.square() + 0.5 * math.log(2 * math.pi)).sum(dim=-1)
        return nll

    def forward(self, output: PoseOutput, target: Tensor, visible: Tensor) -> LossResult:
        """output (coords, sigmas (B, T, K, 2)), target (B, K, 2), visible (B, K) -> LossResult."""
        if output.sigmas is None:
            raise ValueError("the MLE loss needs a model that predicts sigmas (method 'mle' or 'rle')")
        if output.coords.shape[1] != len(self.flows):
            raise ValueError(
                f"model has {output.coords.shape[1]} stages but the loss has {len(self.flows)} flows"
            )
        check_inputs(output.coords, target, visible)
        visible = visible.bool()
        with float32_region(output.coords.device):
            nll = self.neg_log_likelihood(output.coords, output.sigmas, target, visible)
            if self.heatmap_prior:
                nll = nll + self.heatmap_prior * prior_term(output, target, visible, self.sigma_at_64)
            per_stage = masked_stage_mean(nll, visible)
            total = per_stage.sum()
        return LossResult(total, per_stage.detach())
