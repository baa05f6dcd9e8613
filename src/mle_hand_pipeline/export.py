"""Models packaged for use outside this project: the MLflow models and the ONNX graph.

:func:`log_mlflow_model` logs, to the active MLflow run (``name`` = "model" by default):

- ``model``: MLflow PyTorch model (``pt2``, ``torch.export``, no pickle) of :class:`PackedKeypoints`:
  normalised crops (B, 3, S, S) -> (B, K, 4), exported on the CPU. ``mlflow.pytorch.load_model``
  loads it on the CPU, on any machine; :func:`load_logged_model` loads it on any device (a GPU too).
  A ``torch.export`` program keeps the device it was exported on (weights and any device argument in
  its graph), and MLflow refuses to load it elsewhere ("the original model contains weights / buffers
  on 'cpu' device, it can't be loaded on 'cuda' device"): so its pyfunc flavour loads on a GPU
  machine only as ``mlflow.pyfunc.load_model(uri, model_config={"device": "cpu"})``.
- ``onnx/model.onnx``: the same inference graph (stage T only, no flows) as ONNX with a dynamic
  batch axis, input ``images`` (B, 3, S, S), outputs ``coords_px`` and ``sigmas_px`` (B, K, 2) in
  crop pixels; ``onnx/check.json`` holds the max abs difference to PyTorch on a random batch.
- ``pyfunc_model``: a pyfunc that takes IMAGES (arrays, image files as bytes or base64, with boxes) and
  returns keypoints and sigmas in source-image pixels (:mod:`mle_hand_pipeline.pyfunc_model`). It
  ships the ONNX graph and needs only mlflow, numpy, pandas, pillow and onnxruntime to load, so
  ``mlflow.pyfunc.load_model`` and ``mlflow models predict`` work without torch or this project.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec
from torch import nn

from mle_hand_pipeline import pyfunc_model
from mle_hand_pipeline.models.pose_net import InferenceWrapper

ONNX_ARTIFACT_DIR = "onnx"
ONNX_FILE = "model.onnx"
ONNX_INPUT = "images"
ONNX_OUTPUTS = ("coords_px", "sigmas_px")
ONNX_OPSET = 17
ONNX_TOLERANCE_PX = 1e-3  # max abs difference ONNX Runtime vs PyTorch on coordinates, in crop pixels


class OnnxMismatchError(RuntimeError):
    """ONNX Runtime and PyTorch disagree by more than :data:`ONNX_TOLERANCE_PX`."""


class PackedKeypoints(nn.Module):
    """Stage-T prediction as ONE tensor (B, K, 4) = (x, y, sigma_x, sigma_y) in input-crop pixels.

    One output tensor is what MLflow's PyTorch pyfunc and most serving tools expect. Input: (B, 3, S, S)
    crops normalised with ImageNet mean/std (see ``training.augment.normalise``).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.inference = InferenceWrapper(model)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        coords, sigmas = self.inference(images)
        return torch.cat([coords, sigmas], dim=-1)


def packed_signature(input_size: int, num_keypoints: int = 21) -> ModelSignature:
    """MLflow signature of :class:`PackedKeypoints` with a dynamic batch axis."""
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, input_size, input_size))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, num_keypoints, 4))]),
    )


def log_mlflow_model(model: nn.Module, input_size: int, name: str = "model") -> None:
    """Log ``model`` to the active MLflow run: stage T only, no flows, (B, K, 4) out.

    Saved in MLflow's default ``pt2`` format (``torch.export``, no pickle) with a dynamic batch axis;
    ``mlflow.pytorch.load_model`` and ``mlflow.pyfunc.load_model`` both load it. Also logs the ONNX
    graph and the image-taking pyfunc ``pyfunc_<name>`` (see the module docstring).
    """
    example = np.zeros((2, 3, input_size, input_size), dtype=np.float32)
    # Exported on the CPU so the logged program loads anywhere with the CPU's weights; while logging,
    # MLflow reloads it to infer its requirements and would pick the GPU when there is one, which a
    # CPU-exported program refuses (see the module docstring).
    packed = PackedKeypoints(copy.deepcopy(model).cpu().eval())
    with _environment(MLFLOW_DEFAULT_PREDICTION_DEVICE="cpu"):
        mlflow.pytorch.log_model(
            packed, name=name, signature=packed_signature(input_size), input_example=example
        )
    log_onnx_and_pyfunc(model, input_size, name=f"pyfunc_{name}")


PICKLE_OPT_IN = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"  # MLflow's own switch; true only if the user says so


class UnsafeModelError(ValueError):
    """An MLflow model that would run code chosen by whoever logged it (pickle, or code files) when loaded."""


def load_logged_model(uri: str, device: str | torch.device = "cpu") -> nn.Module:
    """The MLflow PyTorch model logged by :func:`log_mlflow_model`, ready on ``device``: (B, 3, S, S)
    normalised crops on ``device`` -> (B, K, 4). Works on a GPU machine, where
    ``mlflow.pytorch.load_model(uri, device="cuda")`` refuses the CPU-exported program.

    Only a ``pt2`` model (``torch.export``) without code files loads, and MLflow checks that its archive
    holds no pickle payload: a model in the ``pickle`` format (or shipping code) is refused with
    :class:`UnsafeModelError` before anything of it is imported or unpickled, since whoever can log or
    register a model could run code on every machine that loads it. Setting MLflow's
    ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true`` (for a registry you trust) loads such models anyway.
    For another device the same archive's program is moved there whole (weights, buffers and the device
    arguments inside its graph) with ``torch.export``'s ``move_to_device_pass``.
    """
    device = torch.device(device)
    local = Path(mlflow.artifacts.download_artifacts(uri))
    trusted = os.environ.get(PICKLE_OPT_IN, "").strip().lower() in ("true", "1")
    if not trusted:
        _refuse_code_or_pickle(uri, local)
    with _environment(**{PICKLE_OPT_IN: "true" if trusted else "false"}):
        module = mlflow.pytorch.load_model(str(local), map_location="cpu")  # (pt2 ignores map_location)
    archive = local / "data" / "model.pt2"
    if device.type == "cpu":
        return module
    if not archive.is_file():  # a pickled model the user chose to trust: an ordinary module
        return module.to(device)
    from torch.export.passes import move_to_device_pass

    program = torch.export.load(archive)  # checked just above
    return move_to_device_pass(program, device).module()


def _refuse_code_or_pickle(uri: str, local: Path) -> None:
    """Raise :class:`UnsafeModelError` unless the MLflow model folder ``local`` is a ``pt2`` PyTorch model
    without code files (read from its MLmodel file and folder, nothing imported)."""
    from mlflow.models import Model

    flavor = Model.load(str(local)).flavors.get("pytorch") or {}
    data = local / str(flavor.get("model_data", "data"))
    if flavor.get("code"):
        what = f"it ships code files ({flavor['code']}) that loading it would import"
    elif not (data / "model.pt2").is_file():
        what = "it is a pickled PyTorch model: loading it would unpickle, i.e. run, what its author chose"
    else:
        return
    raise UnsafeModelError(
        f"model {uri}: refused, {what}. This project logs its models as pt2 archives without code; load "
        f"another model only from a registry you trust, with {PICKLE_OPT_IN}=true"
    )


@contextlib.contextmanager
def _environment(**values: str):
    """Set environment variables for the duration of the block, then restore them."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def export_onnx(model: nn.Module, input_size: int, path: str | Path | None = None) -> bytes:
    """The inference graph of ``model`` (stage T, no flows) as ONNX bytes; also written to ``path``.

    Graph: ``images`` (B, 3, S, S) float32, ImageNet-normalised -> ``coords_px`` (B, K, 2) and
    ``sigmas_px`` (B, K, 2) float32 in crop pixels; B is dynamic, S fixed to ``input_size``. Uses the
    TorchScript exporter (``dynamo=False``), which handles every method's graph.
    """
    wrapper = InferenceWrapper(model.eval()).eval()
    device = next(model.parameters()).device
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns that the crop size becomes a constant: intended, S is fixed per graph.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # The TorchScript exporter is deprecated (it warns about itself), but it handles every method's
        # graph where the dynamo exporter does not yet (the model author's note): the choice is made.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            wrapper,
            (torch.zeros(1, 3, input_size, input_size, device=device),),
            buffer,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[ONNX_INPUT],
            output_names=list(ONNX_OUTPUTS),
            dynamic_axes={key: {0: "batch"} for key in (ONNX_INPUT, *ONNX_OUTPUTS)},
        )
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def check_onnx(
    onnx_model: bytes | str | Path, model: nn.Module, input_size: int, batch: int = 3, seed: int = 0
) -> dict[str, float]:
    """Run the ONNX graph with onnxruntime and ``model`` in PyTorch on one random batch and compare.

    The batch (default 3) differs from the export batch (1), so the dynamic batch axis is exercised.
    Returns ``{"max_abs_diff_coords_px", "max_abs_diff_sigmas_px", "batch", "input_size"}`` and raises
    :class:`OnnxMismatchError` if the coordinates differ by :data:`ONNX_TOLERANCE_PX` or more.
    """
    import onnxruntime as ort

    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, input_size, input_size, generator=generator)
    source = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    coords, sigmas = session.run(list(ONNX_OUTPUTS), {ONNX_INPUT: images.numpy()})
    device = next(model.parameters()).device
    with torch.no_grad():
        ref_coords, ref_sigmas = InferenceWrapper(model.eval())(images.to(device))
    result = {
        "max_abs_diff_coords_px": float(np.abs(coords - ref_coords.cpu().numpy()).max()),
        "max_abs_diff_sigmas_px": float(np.abs(sigmas - ref_sigmas.cpu().numpy()).max()),
        "batch": batch,
        "input_size": input_size,
    }
    if not result["max_abs_diff_coords_px"] < ONNX_TOLERANCE_PX:
        raise OnnxMismatchError(
            f"ONNX Runtime differs from PyTorch by {result['max_abs_diff_coords_px']:.3g} px on the "
            f"coordinates (tolerance {ONNX_TOLERANCE_PX} px)"
        )
    return result


def pyfunc_requirements() -> list[str]:
    """What the image pyfunc needs installed: no torch, no Kedro, not this package."""
    import importlib.metadata as metadata

    def pinned(package: str) -> str:
        try:
            return f"{package}=={metadata.version(package)}"
        except metadata.PackageNotFoundError:
            return package

    return [pinned(p) for p in ("mlflow", "onnxruntime", "numpy", "pandas", "pillow")]


def log_onnx_and_pyfunc(model: nn.Module, input_size: int, name: str = "pyfunc_model") -> dict[str, Any]:
    """Export and check the ONNX graph, log it under ``onnx/``, and log the image pyfunc ``name``.

    Returns the ONNX check (see :func:`check_onnx`); its coordinate difference is also logged as the
    metric ``onnx_max_abs_diff_px``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / ONNX_FILE
        export_onnx(model, input_size, onnx_path)
        check = check_onnx(onnx_path, model, input_size)
        mlflow.log_artifact(str(onnx_path), ONNX_ARTIFACT_DIR)
        mlflow.log_dict(check, f"{ONNX_ARTIFACT_DIR}/check.json")
        mlflow.log_metric("onnx_max_abs_diff_px", check["max_abs_diff_coords_px"])
        config_path = Path(tmp) / "config.json"
        config = {
            "input_size": input_size,
            "num_keypoints": int(getattr(model, "num_keypoints", 21)),
            "box_scale": pyfunc_model.DEFAULT_BOX_SCALE,
            "min_side": pyfunc_model.DEFAULT_MIN_SIDE,
            "batch_size": 16,
        }
        config_path.write_text(json.dumps(config, indent=2))
        mlflow.pyfunc.log_model(
            name=name,
            python_model=pyfunc_model.__file__,  # models from code: the file is copied, not pickled
            artifacts={"onnx": str(onnx_path), "config": str(config_path)},
            pip_requirements=pyfunc_requirements(),
            # The keys a loader may set (MLflow ignores others): no image root (paths refused), limits.
            model_config={"image_root": None, **pyfunc_model.DEFAULT_LIMITS},
        )
    return check
