"""RealNVP (Dinh et al. 2017) on R^2, the density model of the MLE and RLE losses.

``x = f(z)``, ``z ~ N(0, I_2)``, f a stack of 6 affine coupling layers with masks alternating
[0, 1], [1, 0]. Layer i with mask m keeps ``m * x`` and maps the rest:

    forward (z -> x):  x = m*z + (1 - m) * (z * exp(s_i(m*z)) + t_i(m*z))
    inverse (x -> z):  z = m*x + (1 - m) * (x - t_i(m*x)) * exp(-s_i(m*x))

with scale net s = Linear(2,64)-LeakyReLU-Linear(64,64)-LeakyReLU-Linear(64,2)-Tanh and translation net
t the same without the Tanh (both masked by 1 - m). ``log_prob(x) = log N(f^-1(x); 0, I) +
log|det d f^-1 / dx|`` where the log-determinant is ``-sum of the (masked) s`` over the layers.

:func:`stacked_log_prob` evaluates several such flows (one per stage) in one batched pass.

This is the RLE reference design (Jeff-sjtu/res-loglikelihood-regression, ``real_nvp.py``), written
anew with the prior computed in closed form (no ``torch.distributions`` object, so device moves and
dtype are plain).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

FLOW_INITS = ("identity", "default")


def _mlp(tanh: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(2, 64), nn.LeakyReLU(), nn.Linear(64, 64), nn.LeakyReLU()]
    layers.append(nn.Linear(64, 2))
    if tanh:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class RealNVP(nn.Module):
    """2-D RealNVP with a standard normal prior.

    Args:
        num_layers: coupling layers (6 in the paper and RLE).
        init: "identity" (default, MMPose's choice: xavier-uniform weights with gain 0.01 and zero
            biases, so f starts almost at the identity and the density almost at N(0, I)) or "default"
            (PyTorch's default Linear init, as in RLE's own code).
    """

    def __init__(self, num_layers: int = 6, init: str = "identity") -> None:
        super().__init__()
        if init not in FLOW_INITS:
            raise ValueError(f"unknown flow init {init!r}; valid: {', '.join(FLOW_INITS)}")
        masks = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).repeat(num_layers // 2 + 1, 1)[:num_layers]
        self.register_buffer("masks", masks)
        self.s = nn.ModuleList(_mlp(tanh=True) for _ in range(num_layers))
        self.t = nn.ModuleList(_mlp(tanh=False) for _ in range(num_layers))
        if init == "identity":
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    nn.init.xavier_uniform_(module.weight, gain=0.01)
                    nn.init.zeros_(module.bias)

    def forward(self, z: Tensor) -> Tensor:
        """The generative map f: latent (N, 2) -> data (N, 2)."""
        x = z
        for mask, s_net, t_net in zip(self.masks, self.s, self.t, strict=True):
            kept = mask * x
            s = s_net(kept) * (1 - mask)
            t = t_net(kept) * (1 - mask)
            x = kept + (1 - mask) * (x * torch.exp(s) + t)
        return x

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """f^-1: data (N, 2) -> (z (N, 2), log|det dz/dx| (N,))."""
        z = x
        log_det = x.new_zeros(x.shape[0])
        for i in reversed(range(len(self.s))):
            mask = self.masks[i]
            kept = mask * z
            s = self.s[i](kept) * (1 - mask)
            t = self.t[i](kept) * (1 - mask)
            z = kept + (1 - mask) * (z - t) * torch.exp(-s)
            log_det = log_det - s.sum(dim=1)
        return z, log_det

    @staticmethod
    def prior_log_prob(z: Tensor) -> Tensor:
        """log N(z; 0, I_2): (..., 2) -> (...)."""
        return -0.5 * z.square().sum(dim=-1) - math.log(2 * math.pi)

    def log_prob(self, x: Tensor) -> Tensor:
        """log density of the flow at x: (N, 2) -> (N,)."""
        z, log_det = self.inverse(x)
        return self.prior_log_prob(z) + log_det

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n samples (n, 2) from the flow's density; ``generator`` (a CPU one) makes them reproducible
        on any device."""
        z = torch.randn(n, 2, generator=generator, dtype=self.masks.dtype)
        return self.forward(z.to(self.masks.device))


def stacked_log_prob(flows: Sequence[RealNVP], x: Tensor) -> Tensor:
    """``flows[i].log_prob(x[i])`` for every i in one batched pass: x (T, N, 2) -> (T, N).

    The T flows (same number of layers) keep their own parameters; each call stacks them and runs every
    coupling layer for all T at once with ``baddbmm``. Gradients reach each flow's parameters as with
    separate calls. Why: T separate flows are 6 x T couplings of small ops, and on a CPU each op pays
    a fixed threading cost; one pass is a T-th of the ops (``benchmarks/bench_flows.py``).
    """
    masks = flows[0].masks
    z = x
    log_det = x.new_zeros(x.shape[:2])
    for i in reversed(range(len(masks))):
        mask = masks[i]
        kept = mask * z
        s = _stacked_mlp([flow.s[i] for flow in flows], kept) * (1 - mask)
        t = _stacked_mlp([flow.t[i] for flow in flows], kept) * (1 - mask)
        z = kept + (1 - mask) * (z - t) * torch.exp(-s)
        log_det = log_det - s.sum(dim=-1)
    return RealNVP.prior_log_prob(z) + log_det


def _stacked_mlp(nets: Sequence[nn.Sequential], x: Tensor) -> Tensor:
    """T copies of one ``_mlp`` architecture applied to x (T, N, 2), each to its own slice."""
    for layers in zip(*nets, strict=True):
        if isinstance(layers[0], nn.Linear):
            weight = torch.stack([layer.weight for layer in layers])  # (T, out, in)
            bias = torch.stack([layer.bias for layer in layers])  # (T, out)
            x = torch.baddbmm(bias[:, None], x, weight.transpose(1, 2))
        else:  # the activations hold no parameters
            x = layers[0](x)
    return x
