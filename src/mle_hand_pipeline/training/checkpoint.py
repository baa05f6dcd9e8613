"""Checkpoint files and the models in them, without the training engine.

A training run writes ``last.pt`` (the full training state, every epoch) and ``best.pt`` (the
network's weights at the lowest validation NME); both hold ``spec``, the :class:`ModelSpec` that
rebuilds the network. Files are written atomically and load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, field_validator, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass
from torch import nn

from mle_hand_pipeline.methods import METHODS, RESNET_METHODS, build_loss, build_model, method_of
from mle_hand_pipeline.models import BACKBONES, OUTPUT_STRIDES
from mle_hand_pipeline.models.heads import DEFAULT_SIGMA_EPS
from mle_hand_pipeline.parameters import STRICT_BLOCK, check_block, setting
from mle_hand_pipeline.training.pretrained import is_backbone_checkpoint, load_backbone, resnet_backbone

logger = logging.getLogger(__name__)


# ModelSpec fields that say how a run starts, not what the network is: checkpoints do not store them.
INIT_FIELDS = ("pretrained", "init_checkpoint", "init_partial")


@pydantic_dataclass(frozen=True, config=STRICT_BLOCK)
class ModelSpec:
    """Everything needed to rebuild a model and its loss: the ``model`` parameter block (its keys,
    defaults (the paper's), constraints and help live here; ``conf/base/parameters_train.yml`` holds the
    CPU demo's values), and the ``spec`` every checkpoint stores."""

    method: str = setting("mle", "the training method", f"must be one of {', '.join(METHODS)}")
    backbone: str = setting("resnet50", "the ResNet (torchvision)", f"must be one of {', '.join(BACKBONES)}")
    stages: int = setting(5, "refinement stages (T)", "must be an integer >= 1", ge=1)
    input_size: int = setting(
        256, "crop side the network sees, in pixels", "must be an integer >= 32 (pixels)", ge=32
    )
    pretrained: bool = setting(False, "ImageNet weights from torchvision (needs the file or internet)")
    head_channels: int = setting(256, "width of each stage's head", "must be an integer >= 1", ge=1)
    loss: dict[str, Any] = Field(
        default_factory=dict,
        description="options of the method's loss (methods.build_loss); a method ignores the ones its "
        "loss does not take",
        json_schema_extra={"requirement": "must be a mapping of loss options"},
    )
    backbone_stride: int = setting(
        32,
        "where the ResNet stops: 32 (all of it, the paper), 16 or 8",
        f"must be one of {', '.join(map(str, OUTPUT_STRIDES))} (where the ResNet stops)",
    )
    decode_window: int = setting(
        0,
        "soft-argmax over the whole map (0) or the (2r+1)^2 cells around its argmax (r)",
        "must be an integer >= 0 (0: soft-argmax over the whole map)",
        ge=0,
    )
    init_checkpoint: str | None = setting(
        None,
        "a run's best.pt/last.pt or a pretrained backbone to start from",
        "must be null or the path of an existing best.pt/last.pt",
    )
    init_partial: bool = setting(False, "allow a run checkpoint's warm start to leave tensors fresh")

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        method_of(method)
        return method

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, backbone: str) -> str:
        if backbone not in BACKBONES:
            raise ValueError("unknown backbone")
        return backbone

    @field_validator("backbone_stride")
    @classmethod
    def _known_stride(cls, stride: int) -> int:
        if stride not in OUTPUT_STRIDES:
            raise ValueError("unknown stride")
        return stride

    @model_validator(mode="after")
    def _network_and_loss_can_be_built(self) -> ModelSpec:
        multiple = method_of(self.method).input_multiple
        if self.input_size % multiple:
            raise ValueError(
                f"input_size must be a multiple of {multiple} for model.method={self.method}, "
                f"got {self.input_size}"
            )
        try:
            build_loss(self.method, stages=self.stages, **self.loss)
        except (TypeError, ValueError) as error:
            raise ValueError(f"loss: {error}") from None
        return self

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ModelSpec:
        """The ``model`` parameter block (loss options another method's loss takes are ignored by
        :func:`~mle_hand_pipeline.methods.build_loss`, so one block serves every method)."""
        return check_block(cls, params, "model")

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
            decode_window=self.decode_window,
        )

    def build_loss(self) -> nn.Module:
        return build_loss(self.method, stages=self.stages, **self.loss)

    def checkpoint_dict(self) -> dict[str, Any]:
        """The fields that describe the network, as checkpoints store them (``spec``)."""
        # Initialisation choices don't describe the model: a resumed or loaded model has its own weights.
        return {k: v for k, v in asdict(self).items() if k not in INIT_FIELDS}


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the message names the file and, when so, says the disk is full."""


# Less free space than this after a failed write: the disk is full (torch's own error does not say so).
_FULL_BELOW_BYTES = 64 << 20


def save_atomic(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` so that a crash leaves either the old file or the new one, never half.

    Raises:
        CheckpointWriteError: naming ``path`` (and saying the disk is full when it is) for an
            ``OSError`` or torch's writer error (``[enforce fail at inline_container.cc] unexpected pos``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:
        written = _write_error(path, error)  # before the partial file is removed: it holds the space
        Path(temporary).unlink(missing_ok=True)
        raise written from error
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_error(path: Path, error: BaseException) -> CheckpointWriteError:
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    full = getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or (
        free is not None and free < _FULL_BELOW_BYTES
    )
    detail = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    if full:
        room = f" ({free / 1e6:.0f} MB free)" if free is not None else ""
        written = CheckpointWriteError(
            f"cannot write checkpoint {path}: the disk is full{room}; free space on it (old run folders "
            f"under {path.parent.parent}) and resume with train.resume=true "
            f"({type(error).__name__}: {detail})"
        )
        written.errno = errno.ENOSPC
        return written
    written = CheckpointWriteError(f"cannot write checkpoint {path}: {type(error).__name__}: {detail}")
    written.errno = getattr(error, "errno", None)
    return written


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers only, no code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise ValueError(f"{path}: not a loadable checkpoint ({type(error).__name__}: {error})") from error


def check_resumable(run_folder: str | Path, spec: ModelSpec) -> None:
    """Raise ``ValueError`` naming ``run_folder/last.pt`` when it was trained with another model than
    ``spec`` (a resume would fail), before the run it belongs to is marked resumed."""
    path = Path(run_folder) / "last.pt"
    saved = load_checkpoint(path)["spec"] if path.is_file() else None
    if saved is not None and saved != spec.checkpoint_dict():
        raise ValueError(
            f"{path} was trained with model {saved}, not {spec.checkpoint_dict()}; "
            "use another checkpoint folder or train.resume=false"
        )


def warm_start(
    model: nn.Module, path: str | Path, log: bool = True, allow_partial: bool = False
) -> dict[str, int]:
    """Initialise ``model`` from another run's ``best.pt``/``last.pt`` where names and shapes match,
    or from a backbone checkpoint of ``pretrain_<dataset>`` (backbone only, see ``training.pretrained``).

    The RLE authors and MMPose users start likelihood losses from a heatmap- or integral-trained
    network; heads the source lacks (e.g. the variance head) keep their fresh initialisation. Such a
    partial load must be asked for (``allow_partial``, ``model.init_partial: true``) and is logged as a
    WARNING with the counts; a run checkpoint of another ResNet is refused, as a backbone checkpoint is.

    Returns:
        ``{"init_loaded_tensors": n, "init_fresh_tensors": m}``: tensors of ``model`` loaded and left
        at their fresh initialisation (the run logs them to MLflow).

    Raises:
        ValueError: naming the file, for another backbone, for no matching tensor, or for a partial
            load without ``allow_partial`` (with the counts and examples of what would stay fresh).
    """
    state = load_checkpoint(path)
    own = model.state_dict()
    if is_backbone_checkpoint(state):
        load_backbone(model, state, path, log=log)
        backbone = resnet_backbone(model)
        loaded = len(backbone.state_dict()) if backbone is not None else 0
        return {"init_loaded_tensors": loaded, "init_fresh_tensors": len(own) - loaded}
    source = (state.get("spec") or {}).get("backbone")
    backbone = resnet_backbone(model)
    source_method = (state.get("spec") or {}).get("method")
    source_has_resnet = source_method not in METHODS or source_method in RESNET_METHODS
    if backbone is not None and source and source_has_resnet:
        if source != backbone.name:
            raise ValueError(
                f"{path}: a {source} run checkpoint cannot initialise a {backbone.name} model; set "
                f"model.backbone={source} or start from a {backbone.name} run's checkpoint"
            )
    weights = _model_weights(state)
    usable = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ValueError(f"{path}: no weight matches this model's names and shapes; nothing to warm-start")
    fresh = [k for k in own if k not in usable]
    unused = [k for k in weights if k not in usable]
    counts = {"init_loaded_tensors": len(usable), "init_fresh_tensors": len(fresh)}
    if fresh or unused:
        what = (
            f"{len(usable)} of {len(own)} tensors loaded, {len(fresh)} start fresh "
            f"(e.g. {', '.join(fresh[:3]) or 'none'}), {len(unused)} of the checkpoint's unused "
            f"(e.g. {', '.join(unused[:3]) or 'none'})"
        )
        if not allow_partial:
            raise ValueError(
                f"{path}: a partial warm start: {what}; set model.init_partial=true to train with the "
                "rest fresh (as from an integral run to mle: the variance heads start fresh)"
            )
        if log:
            logger.warning("warm start from %s (model.init_partial): %s", path, what)
    elif log:
        logger.info("warm start from %s: all %d tensors loaded", path, len(own))
    model.load_state_dict(usable, strict=False)
    return counts


def check_warm_start(spec: ModelSpec) -> dict[str, int]:
    """What :func:`warm_start` from ``spec.init_checkpoint`` would load into a fresh ``spec`` model (on
    the CPU, no ImageNet download): its counts, or its ``ValueError``; checked before a run starts."""
    if not spec.init_checkpoint:
        return {}
    return warm_start(
        spec.build_model(pretrained=False), spec.init_checkpoint, log=False, allow_partial=spec.init_partial
    )


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
