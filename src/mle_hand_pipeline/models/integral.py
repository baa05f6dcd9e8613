"""Heatmap -> coordinate decoders, both returning normalised crop coordinates.

Heatmap cell ``j`` of a map ``w`` cells wide covers ``[j, j + 1) * S / w`` crop pixels, so its centre
is at ``u_j = (j + 0.5) / w - 0.5`` in normalised units, independent of the crop size ``S``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def cell_centres(n: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """(n,) normalised centres ``(j + 0.5) / n - 0.5`` of the cells of an n-cell axis."""
    return (torch.arange(n, device=device, dtype=dtype) + 0.5) / n - 0.5


def soft_argmax(heatmaps: Tensor) -> Tensor:
    """Integral regression (Sun et al. 2018; the paper's Eq. 1): expected cell centre under a softmax.

    Args:
        heatmaps: (..., h, w) logits. Computed in float32 (float64 stays float64), also under
            autocast.

    Returns:
        (..., 2) normalised (x, y): ``sum_p softmax(H)(p) * centre(p)``. Differentiable.
    """
    *lead, h, w = heatmaps.shape
    dtype = torch.promote_types(heatmaps.dtype, torch.float32)
    with torch.autocast(device_type=heatmaps.device.type, enabled=False):
        logits = heatmaps.to(dtype).reshape(*lead, h * w)
        probs = torch.softmax(logits, dim=-1).reshape(*lead, h, w)
        xs = cell_centres(w, heatmaps.device, dtype)
        ys = cell_centres(h, heatmaps.device, dtype)
        x = (probs.sum(dim=-2) * xs).sum(dim=-1)
        y = (probs.sum(dim=-1) * ys).sum(dim=-1)
        return torch.stack((x, y), dim=-1)


def local_soft_argmax(heatmaps: Tensor, radius: int) -> Tensor:
    """Soft-argmax restricted to the ``(2 radius + 1)^2`` cells around each map's argmax.

    The expectation over the whole map is pulled towards the map's centre by whatever mass lies away
    from the peak (an uncertain keypoint's second guess, a flat background); the window keeps the
    argmax's choice of mode and soft-argmax's sub-cell precision within it. Differentiable with respect
    to the window's logits (the window's position is not), so it trains like soft-argmax. Cells of the
    window outside the map are left out.

    Args:
        heatmaps: (..., h, w) logits. Computed in float32 (float64 stays float64), also under autocast.
        radius: r >= 1 cells.

    Returns:
        (..., 2) normalised (x, y).
    """
    if radius < 1:
        raise ValueError(f"radius must be >= 1, got {radius}")
    *lead, h, w = heatmaps.shape
    dtype = torch.promote_types(heatmaps.dtype, torch.float32)
    with torch.autocast(device_type=heatmaps.device.type, enabled=False):
        flat = heatmaps.to(dtype).reshape(-1, h * w)
        index = flat.detach().argmax(dim=-1)
        iy = torch.div(index, w, rounding_mode="floor")
        ix = index - iy * w
        steps = torch.arange(-radius, radius + 1, device=heatmaps.device)
        # (N, (2r+1)^2) rows and columns of each window; flatten, not a reshape to len(flat), keeps the
        # batch axis dynamic in an ONNX export
        ys = (iy[:, None, None] + steps[None, :, None]).expand(-1, -1, len(steps)).flatten(1)
        xs = (ix[:, None, None] + steps[None, None, :]).expand(-1, len(steps), -1).flatten(1)
        inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        logits = flat.gather(1, ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1))
        probs = torch.softmax(logits.masked_fill(~inside, float("-inf")), dim=-1)
        x = (probs * ((xs.to(dtype) + 0.5) / w - 0.5)).sum(dim=-1)
        y = (probs * ((ys.to(dtype) + 0.5) / h - 0.5)).sum(dim=-1)
        return torch.stack((x, y), dim=-1).reshape(*lead, 2)


def argmax_decode(heatmaps: Tensor) -> Tensor:
    """Classic heatmap decoding: the argmax cell, shifted a quarter cell towards the higher neighbour.

    The shift is applied per axis where both neighbours exist (not on the border cells), and is zero
    when the two neighbours are equal. Not differentiable (wrap in ``torch.no_grad()`` if needed).

    Args:
        heatmaps: (..., h, w) maps.

    Returns:
        (..., 2) normalised (x, y), float32.
    """
    *lead, h, w = heatmaps.shape
    flat = heatmaps.detach().float().reshape(-1, h * w)
    idx = flat.argmax(dim=-1)
    iy = torch.div(idx, w, rounding_mode="floor")
    ix = idx - iy * w

    def neighbour(dy: int, dx: int) -> Tensor:
        ny = (iy + dy).clamp(0, h - 1)
        nx = (ix + dx).clamp(0, w - 1)
        return flat.gather(1, (ny * w + nx)[:, None])[:, 0]

    inner_x = (ix > 0) & (ix < w - 1)
    inner_y = (iy > 0) & (iy < h - 1)
    shift_x = torch.where(inner_x, 0.25 * torch.sign(neighbour(0, 1) - neighbour(0, -1)), 0.0)
    shift_y = torch.where(inner_y, 0.25 * torch.sign(neighbour(1, 0) - neighbour(-1, 0)), 0.0)
    x = (ix.float() + shift_x + 0.5) / w - 0.5
    y = (iy.float() + shift_y + 0.5) / h - 0.5
    return torch.stack((x, y), dim=-1).reshape(*lead, 2)
