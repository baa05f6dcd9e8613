"""Checkpoint files and the models in them, without the training engine.

A training run writes ``last.pt`` (the full training state, every epoch) and ``best.pt`` (the
network's weights at the lowest validation NME); both hold ``spec``, the :class:`ModelSpec` that
rebuilds the network. Files are written atomically and load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mle_hand_pipeline.methods import build_loss, build_model
from mle_hand_pipeline.models.heads import DEFAULT_SIGMA_EPS
from mle_hand_pipeline.training.pretrained import is_backbone_checkpoint, load_backbone

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model and its loss (the ``model`` parameter block)."""

    method: str = "mle"
    backbone: str = "resnet50"
    stages: int = 5
    input_size: int = 256
    pretrained: bool = False
    head_channels: int = 256
    loss: dict[str, Any] = field(default_factory=dict)
    backbone_stride: int = 32
    init_checkpoint: str | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ModelSpec:
        """The ``model`` parameter block (loss options another method's loss takes are ignored by
        :func:`~mle_hand_pipeline.methods.build_loss`, so one block serves every method)."""
        return cls(**params)

    def build_model(self, pretrained: bool | None = None) -> nn.Module:
        return build_model(
            self.method,
            backbone=self.backbone,
            stages=self.stages,
            input_size=self.input_size,
            pretrained=self.pretrained if pretrained is None else pretrained,
            head_channels=self.head_channels,
            # One sigma floor for the sigma head and the loss (the loss's floor is then a no-op).
            sigma_eps=self.loss.get("sigma_eps", DEFAULT_SIGMA_EPS),
            backbone_stride=self.backbone_stride,
        )

    def build_loss(self) -> nn.Module:
        return build_loss(self.method, stages=self.stages, **self.loss)

    def checkpoint_dict(self) -> dict[str, Any]:
        """The fields that describe the network, as checkpoints store them (``spec``)."""
        # Initialisation choices don't describe the model: a resumed or loaded model has its own weights.
        return {k: v for k, v in asdict(self).items() if k not in ("pretrained", "init_checkpoint")}


def save_atomic(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` so that a crash leaves either the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers only, no code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise ValueError(f"{path}: not a loadable checkpoint ({type(error).__name__}: {error})") from error


def warm_start(model: nn.Module, path: str | Path, log: bool = True) -> None:
    """Initialise ``model`` from another run's ``best.pt``/``last.pt`` where names and shapes match,
    or from a backbone checkpoint of ``pretrain_<dataset>`` (backbone only, see ``training.pretrained``).

    The RLE authors and MMPose users start likelihood losses from a heatmap- or integral-trained
    network; heads the source lacks (e.g. the variance head) keep their fresh initialisation.
    """
    state = load_checkpoint(path)
    if is_backbone_checkpoint(state):
        load_backbone(model, state, path, log=log)
        return
    weights = _model_weights(state)
    own = model.state_dict()
    usable = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ValueError(f"{path}: no weight matches this model's names and shapes; nothing to warm-start")
    model.load_state_dict(usable, strict=False)
    if log:
        logger.info("warm start from %s: %d of %d tensors loaded", path, len(usable), len(own))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelSpec]:
    """A model in eval mode from ``best.pt`` or ``last.pt``, and its spec (no ImageNet download)."""
    state = load_checkpoint(path, map_location=device)
    spec = ModelSpec(**state["spec"])
    model = spec.build_model(pretrained=False)
    missing, unexpected = model.load_state_dict(_model_weights(state), strict=False)
    if missing == ["sigma_scale"] and not unexpected:
        logger.warning("%s predates sigma calibration: its sigmas are raw scales, not pixel errors", path)
    elif missing or unexpected:
        raise RuntimeError(f"{path} does not fit its model: missing {missing}, unexpected {unexpected}")
    return model.to(device).eval(), spec


def _model_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The network's state dict from ``best.pt`` (``model``) or ``last.pt`` (``module`` = model + loss)."""
    if "model" in state:
        return state["model"]
    return {k.removeprefix("model."): v for k, v in state["module"].items() if k.startswith("model.")}
