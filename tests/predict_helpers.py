"""Tiny models and checkpoints for the predict / export / CLI tests (importable: pythonpath = tests)."""

from __future__ import annotations

from pathlib import Path

import torch

from mle_hand_pipeline.training.checkpoint import ModelSpec, save_atomic

SIZE = 64
TINY_SPEC = ModelSpec(method="mle", backbone="resnet18", stages=2, input_size=SIZE, head_channels=16)
REAL = Path(__file__).parent / "fixtures" / "real_samples"
FREIHAND_IMAGES = sorted((REAL / "FreiHAND_pub_v2" / "training" / "rgb").glob("*.jpg"))
RHD_IMAGES = sorted((REAL / "RHD_published_v2" / "evaluation" / "color").glob("*.png"))


def tiny_model(seed: int = 0) -> torch.nn.Module:
    """An untrained tiny MLE model (eval mode) whose keypoints spread over the crop.

    Freshly initialised heads give heatmaps flat to 1e-10 (N(0, 0.001) weights through three
    deconvolutions), so every keypoint would sit at the crop centre and any mapping error would be
    invisible; each stage's last conv is rescaled so that its maps have a standard deviation of ~3.
    """
    torch.manual_seed(seed)
    model = TINY_SPEC.build_model().eval()
    probe = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        spread = model(probe).heatmaps.std(dim=(-2, -1)).mean().item()
        for stage in model.stages:
            stage.heatmap_head.final.weight.mul_(3.0 / spread)
    return model


def save_checkpoint(path: Path, seed: int = 0) -> Path:
    """A ``best.pt`` as the training engine writes it (spec + model weights)."""
    spec = {k: v for k, v in vars(TINY_SPEC).items() if k != "pretrained"}
    save_atomic({"spec": spec, "model": tiny_model(seed).state_dict(), "epoch": 1, "val": {}}, path)
    return path


def _run_payload(marker: Path) -> torch.nn.Module:
    marker.touch()  # an attacker's model would run anything here
    return torch.nn.Identity()


class PickledPayload(torch.nn.Module):
    """A model whose unpickling calls :func:`_run_payload` (creates ``marker``), as a malicious pickled
    registry model would run its code."""

    def __init__(self, marker: Path):
        super().__init__()
        self.marker = marker

    def __reduce__(self):
        return (_run_payload, (self.marker,))
