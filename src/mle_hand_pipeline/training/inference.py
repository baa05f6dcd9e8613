"""Batched prediction over a :class:`~.data.HandCrops` dataset (evaluation, validation)."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mle_hand_pipeline.evaluation.metrics import nme, normalised_errors, pck
from mle_hand_pipeline.models.integral import argmax_decode, local_soft_argmax
from mle_hand_pipeline.models.pose_net import error_sigmas
from mle_hand_pipeline.training.augment import prepare_batch
from mle_hand_pipeline.training.data import HandCrops


@dataclass
class CropPredictions:
    """Model outputs for every crop of a dataset, in crop pixels of the stored crops.

    coords: (N, T, K, 2) per-stage keypoints.
    sigmas: (N, T, K, 2) per-stage predicted RMS errors (raw sigmas times the model's ``sigma_scale``),
        or None for methods without uncertainty.
    """

    coords: np.ndarray
    sigmas: np.ndarray | None


def inference_device(device: str | torch.device | None = "auto") -> torch.device:
    """The device prediction and evaluation run on: ``"auto"`` (or None) is the first CUDA GPU when
    there is one, else the CPU; anything else is taken as a torch device name (``"cpu"``, ``"cuda:1"``)."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast when ``precision == "bf16"``, else nothing."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def bf16_weights(model: nn.Module) -> nn.Module:
    """``model`` with its weights and buffers cast to bf16 once (feed it bf16 images), instead of
    autocasting every call: on a GPU the per-call casts cost more than they save at small batches
    (benchmarks/bench_model.py measures both). ``sigma_scale`` stays fp32, so the calibrated sigmas
    are scaled at full precision; the decoders already work in fp32. A trained CPU-demo model moves
    by at most 0.86 px of a 256-px crop (64 test crops; its test EPE is 22 px)."""
    model = model.to(torch.bfloat16)
    if getattr(model, "sigma_scale", None) is not None:
        model.sigma_scale = model.sigma_scale.float()
    return model


@torch.no_grad()
def predict_crops(
    model: nn.Module,
    dataset: HandCrops,
    input_size: int,
    device: torch.device,
    precision: str = "fp32",
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = True,
) -> CropPredictions:
    """Run ``model`` (in eval mode) over ``dataset`` and return all stages' outputs in crop pixels."""
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    coords, sigmas = [], []
    for batch in tqdm(loader, desc="predicting", unit="batch", leave=False, disable=not progress):
        images, _, _ = prepare_batch(batch, input_size, device, settings=None, generator=None)
        with autocast_context(device, precision):
            output = model(images)
        coords.append(output.coords.float().cpu())
        if output.sigmas is not None:
            sigmas.append(error_sigmas(model, output.sigmas).cpu())
    model.train(was_training)
    scale = dataset.crop_size
    return CropPredictions(
        coords=((torch.cat(coords) + 0.5) * scale).numpy().astype(np.float64),
        sigmas=(torch.cat(sigmas) * scale).numpy().astype(np.float64) if sigmas else None,
    )


def score_crops(
    model: nn.Module,
    dataset: HandCrops,
    input_size: int,
    device: torch.device,
    precision: str = "fp32",
    batch_size: int = 64,
) -> dict[str, float]:
    """NME and PCK@0.2 of the model's last stage on ``dataset`` (validation; quick checks).

    Returns ``{"nme": ..., "pck_0.2": ...}``; the full evaluation suite is ``evaluation.report``.
    """
    predictions = predict_crops(model, dataset, input_size, device, precision, batch_size, progress=False)
    errors = normalised_errors(
        predictions.coords[:, -1], dataset.keypoints.numpy(), dataset.hand_size.numpy()
    )
    visible = dataset.visible.numpy()
    return {"nme": float(nme(errors, visible)), "pck_0.2": float(pck(errors, visible, 0.2))}


@dataclass
class MapDiagnostics:
    """What a heatmap model's maps look like, for every crop, stage and keypoint.

    argmax_coords: (N, T, K, 2) the maps decoded by argmax (:func:`~..models.integral.argmax_decode`),
        in crop pixels of the stored crops: beside the model's own (soft-argmax) coordinates, it tells
        a decoding bias from a localisation error.
    local_coords: {r: (N, T, K, 2)} the maps decoded by soft-argmax over the (2r+1)^2 cells around
        their argmax (:func:`~..models.integral.local_soft_argmax`), for each radius asked for.
    max_prob: (N, T, K) the largest cell probability of ``softmax(map)`` (1/(h w) for a flat map).
    entropy: (N, T, K) the entropy of ``softmax(map)`` in nats (``log(h w)`` for a flat map).
    """

    argmax_coords: np.ndarray
    local_coords: dict[int, np.ndarray]
    max_prob: np.ndarray
    entropy: np.ndarray


@torch.no_grad()
def map_diagnostics(
    model: nn.Module,
    dataset: HandCrops,
    input_size: int,
    device: torch.device,
    batch_size: int = 64,
    radii: tuple[int, ...] = (1, 2),
) -> MapDiagnostics:
    """Argmax and local soft-argmax (``radii``) decoding and peakedness of the maps of ``model`` (one
    returning heatmaps) on ``dataset``."""
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    coords, max_prob, entropy = [], [], []
    local: dict[int, list[torch.Tensor]] = {r: [] for r in radii}
    for batch in loader:
        images, _, _ = prepare_batch(batch, input_size, device, settings=None, generator=None)
        maps = model(images).heatmaps
        if maps is None:
            raise ValueError(f"{type(model).__name__} returns no heatmaps")
        log_probs = torch.log_softmax(maps.float().flatten(-2), dim=-1)
        coords.append(argmax_decode(maps).cpu())
        for radius in radii:
            local[radius].append(local_soft_argmax(maps, radius).cpu())
        max_prob.append(log_probs.max(dim=-1).values.exp().cpu())
        entropy.append(-(log_probs.exp() * log_probs).sum(dim=-1).cpu())
    model.train(was_training)

    def to_pixels(normalised: list[torch.Tensor]) -> np.ndarray:
        return ((torch.cat(normalised) + 0.5) * dataset.crop_size).numpy().astype(np.float64)

    return MapDiagnostics(
        argmax_coords=to_pixels(coords),
        local_coords={radius: to_pixels(local[radius]) for radius in radii},
        max_prob=torch.cat(max_prob).numpy().astype(np.float64),
        entropy=torch.cat(entropy).numpy().astype(np.float64),
    )
