"""Predict hand keypoints on new images with a trained model (library behind ``mle-hand predict`` and
``kedro run --pipelines=predict``).

Steps per image: read it, choose the square crop (around a given hand box, or the whole image), resample
it to the model input, normalise, run the model (stage T only), and map keypoints and sigmas from crop
pixels back to SOURCE-image pixels. Cropping and the mapping are those of the logged pyfunc
(:mod:`mle_hand_pipeline.pyfunc_model`), so every way of predicting gives the same numbers.

Models (``model`` argument of :func:`load_predictor`, resolved by :mod:`mle_hand_pipeline.model_source`):
a local training checkpoint (``best.pt`` / ``last.pt``), a local ONNX file (onnx backend only), a local
MLflow model folder, an MLflow run id or ``runs:/<run_id>`` (the run's ``model`` / ``onnx/model.onnx``),
or a model URI (``runs:/<run_id>/model``, ``models:/<name>/<version>``).

Backends: ``torch`` (PyTorch eager; from MLflow, the ``pt2`` PyTorch model) or ``onnx`` (ONNX Runtime;
a checkpoint is exported on the fly).
"""

from __future__ import annotations

import csv
import glob
import json
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from mle_hand_pipeline.keypoints import KEYPOINT_NAMES
from mle_hand_pipeline.model_source import (
    CHECKPOINT,
    ONNX,
    ModelNotFoundError,
    ModelSource,
    load_mlflow_pytorch,
    mlflow_load_errors,
    resolve_model_source,
)
from mle_hand_pipeline.pyfunc_model import (
    DEFAULT_BOX_SCALE,
    DEFAULT_MIN_SIDE,
    ImageError,
    InputCrop,
    crop_for,
    crop_image,
    crop_to_source,
    normalise,
    read_image,
)

BACKENDS = ("torch", "onnx")
PRECISIONS = ("fp32", "bf16")

__all__ = [
    "BACKENDS",
    "Failure",
    "ImageError",
    "ImagePrediction",
    "ModelNotFoundError",
    "Predictor",
    "keypoints_rows",
    "load_predictor",
    "overlay",
    "parse_box",
    "predict_images",
    "predictions_document",
    "resolve_images",
    "write_outputs",
]


@dataclass
class Predictor:
    """A loaded model.

    run: (B, 3, S, S) float32 ImageNet-normalised crops -> (coords_px, sigmas_px), each (B, K, 2)
        float32 in crop pixels (sigmas zero for methods without uncertainty).
    input_size: S.
    backend: "torch" or "onnx".
    source: what was loaded (for the output files).
    """

    run: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    input_size: int
    backend: str
    source: str


@dataclass
class ImagePrediction:
    """One image's result; ``keypoints`` and ``sigmas`` are (K, 2) in source-image pixels.

    (:class:`...training.inference.CropPredictions` holds the arrays of a whole set of stored crops.)
    """

    image: str
    width: int
    height: int
    box: tuple[float, float, float, float] | None  # the hand box given, or None for the whole image
    crop: InputCrop
    mirrored: bool
    keypoints: np.ndarray
    sigmas: np.ndarray

    def to_record(self) -> dict[str, Any]:
        """JSON-ready dict (lists of floats)."""
        return {
            "image": self.image,
            "width": self.width,
            "height": self.height,
            "box": None if self.box is None else list(self.box),
            "crop": {"x0": self.crop.x0, "y0": self.crop.y0, "side": self.crop.side},
            "mirrored": self.mirrored,
            "keypoint_names": list(KEYPOINT_NAMES[: len(self.keypoints)]),
            "keypoints": self.keypoints.tolist(),
            "sigmas": self.sigmas.tolist(),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ImagePrediction:
        """Inverse of :meth:`to_record`."""
        crop = record["crop"]
        return cls(
            image=record["image"],
            width=int(record["width"]),
            height=int(record["height"]),
            box=None if record["box"] is None else tuple(record["box"]),
            crop=InputCrop(crop["x0"], crop["y0"], crop["side"]),
            mirrored=bool(record["mirrored"]),
            keypoints=np.asarray(record["keypoints"], dtype=np.float64),
            sigmas=np.asarray(record["sigmas"], dtype=np.float64),
        )


@dataclass
class Failure:
    """An image that could not be processed, and why."""

    image: str
    error: str

    def to_record(self) -> dict[str, str]:
        return {"image": self.image, "error": self.error}


# ---------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------


def load_predictor(
    model: str | Path, backend: str = "torch", device: str = "auto", precision: str = "fp32"
) -> Predictor:
    """Load ``model`` (checkpoint, ONNX file, MLflow model folder, run id or URI) for ``backend`` on
    ``device`` (``"auto"``: the GPU when there is one, see ``training.inference.inference_device``).
    ``precision="bf16"`` casts a checkpoint's weights to bf16 once (torch backend only; see
    ``training.inference.bf16_weights``).

    Raises :class:`ModelNotFoundError` naming the model when it does not exist or cannot be loaded;
    ``ValueError`` for an unknown backend or precision, or bf16 with anything but a checkpoint on torch.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    from mle_hand_pipeline.training.inference import inference_device

    device = str(inference_device(device))
    source = resolve_model_source(model)
    if precision == "bf16" and (source.kind != CHECKPOINT or backend != "torch"):
        raise ValueError(
            f"precision bf16 needs a training checkpoint on the torch backend; {source.name} is "
            f"{'an ' + source.kind if source.kind != CHECKPOINT else 'a checkpoint'} on {backend} "
            "(the exported models are fp32 graphs)"
        )
    if source.kind == ONNX:
        if backend != "onnx":
            raise ValueError(f"{source.name} is an ONNX file: use the onnx backend (--backend onnx)")
        return _onnx_predictor(source.location, source.name)
    if source.kind == CHECKPOINT:
        return _checkpoint_predictor(Path(source.location), backend, device, precision)
    return _mlflow_predictor(source, backend, device)


def _torch_run(module, device: str, dtype=None) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    import torch

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            out = module(torch.from_numpy(batch).to(device, dtype))
        if isinstance(out, tuple):  # InferenceWrapper: (coords_px, sigmas_px)
            coords, sigmas = out
        else:  # PackedKeypoints (the logged MLflow PyTorch model): (B, K, 4)
            coords, sigmas = out[..., :2], out[..., 2:]
        return coords.float().cpu().numpy(), sigmas.float().cpu().numpy()

    return run


def _onnx_predictor(source: bytes | str, name: str) -> Predictor:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for bad files
        raise ModelNotFoundError(f"model {name}: not a loadable ONNX graph ({error})") from error
    size = session.get_inputs()[0].shape[-1]
    if not isinstance(size, int):
        raise ModelNotFoundError(f"model {name}: the ONNX input has no fixed image size ({size!r})")
    input_name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        coords, sigmas = session.run(None, {input_name: batch})
        return coords, sigmas

    return Predictor(run, size, "onnx", name)


def _checkpoint_predictor(path: Path, backend: str, device: str, precision: str = "fp32") -> Predictor:
    import torch

    from mle_hand_pipeline.models.pose_net import InferenceWrapper
    from mle_hand_pipeline.training.checkpoint import load_model
    from mle_hand_pipeline.training.inference import bf16_weights

    try:
        model, spec = load_model(path, device)
    except Exception as error:  # unpickling errors, missing keys, wrong shapes: all mean "not ours"
        raise ModelNotFoundError(
            f"model {path}: not a training checkpoint of this project ({type(error).__name__}: {error})"
        ) from error
    if backend == "onnx":
        from mle_hand_pipeline.export import export_onnx

        return _onnx_predictor(export_onnx(model, spec.input_size), str(path))
    dtype = torch.bfloat16 if precision == "bf16" else None
    if dtype is not None:
        model = bf16_weights(model)
    run = _torch_run(InferenceWrapper(model).eval(), device, dtype)
    return Predictor(run, spec.input_size, "torch", str(path))


def _mlflow_predictor(source: ModelSource, backend: str, device: str) -> Predictor:
    if backend == "onnx":
        with mlflow_load_errors(source.name):
            return _onnx_predictor(_mlflow_onnx_file(source), source.label)
    module, size = load_mlflow_pytorch(source, device)
    return Predictor(_torch_run(module, device), size, "torch", source.label)


def _mlflow_onnx_file(source: ModelSource) -> str:
    """Local path of the ONNX graph behind an MLflow source."""
    import mlflow

    from mle_hand_pipeline.export import ONNX_ARTIFACT_DIR, ONNX_FILE

    if source.run_id and source.location == f"runs:/{source.run_id}/model":
        # The run's PyTorch model: the ONNX graph logged next to it.
        return mlflow.artifacts.download_artifacts(
            run_id=source.run_id, artifact_path=f"{ONNX_ARTIFACT_DIR}/{ONNX_FILE}"
        )
    if source.location.endswith(".onnx"):
        return mlflow.artifacts.download_artifacts(source.location)
    local = Path(source.location)
    folder = local if local.is_dir() else Path(mlflow.artifacts.download_artifacts(source.location))
    found = sorted(folder.rglob("*.onnx"))
    if not found:
        raise ModelNotFoundError(f"model {source.name}: holds no ONNX file; use --backend torch")
    return str(found[0])


# ---------------------------------------------------------------------------------------------------
# Predicting
# ---------------------------------------------------------------------------------------------------


def parse_box(text: str | Sequence[float] | None) -> tuple[float, float, float, float] | None:
    """``"x0,y0,x1,y1"`` (or space-separated, handy in ``kedro run --params``) or a 4-sequence -> a
    4-tuple of floats (None stays None)."""
    if text is None:
        return None
    values = re.split(r"[,\s]+", text.strip()) if isinstance(text, str) else list(text)
    try:
        box = tuple(float(v) for v in values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"a box is four numbers x0,y0,x1,y1, got {text!r}") from error
    if len(box) != 4:
        raise ValueError(f"a box is four numbers x0,y0,x1,y1, got {text!r}")
    return box  # type: ignore[return-value]


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def resolve_images(patterns: str | Sequence[str]) -> list[str]:
    """The image files named by ``patterns``, in order, without duplicates.

    An argument that names an existing file is that file, even when it looks like a glob
    (``photo[1].jpg``); a folder stands for its images (:data:`IMAGE_SUFFIXES`, sorted, not recursive);
    otherwise a glob pattern (``**`` allowed) is expanded. A plain path that does not exist is kept, so
    that it is reported as a failure; a pattern that matches nothing, or a folder without images, raises
    ``FileNotFoundError``.
    """
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    found: list[str] = []
    for pattern in map(str, patterns):
        if os.path.isdir(pattern):
            found += _folder_images(pattern)
        elif os.path.isfile(pattern) or not glob.has_magic(pattern):
            found.append(pattern)
        else:
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise FileNotFoundError(f"no image matches {pattern!r}")
            for match in matches:
                found += _folder_images(match) if os.path.isdir(match) else [match]
    return list(dict.fromkeys(found))


def _folder_images(folder: str) -> list[str]:
    images = sorted(
        str(p) for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the folder {folder}")
    return images


def predict_images(
    predictor: Predictor,
    images: Sequence[str | Path],
    box: Sequence[float] | None = None,
    box_scale: float = DEFAULT_BOX_SCALE,
    mirrored: bool = False,
    batch_size: int = 16,
) -> tuple[list[ImagePrediction], list[Failure]]:
    """Predict every image; a bad image or box becomes a :class:`Failure` and the rest go on.

    Args:
        predictor: from :func:`load_predictor`.
        images: image files.
        box: the hand's box ``(x0, y0, x1, y1)`` in source pixels, the same for every image; None
            crops the whole image (the square of side max(H, W) centred on it).
        box_scale: crop side / box side (1.5 as in training, where the box is the tight box of the
            visible keypoints).
        mirrored: mirror the crop left-right first, as preprocessing does for left hands.
        batch_size: images per model call.

    Returns:
        (predictions in input order, failures in input order).
    """
    predictions: list[ImagePrediction] = []
    failures: list[Failure] = []
    size = predictor.input_size
    box = parse_box(box)
    pending: list[tuple[str, int, int, InputCrop, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        batch = normalise(np.stack([crop for *_, crop in pending]))
        coords, sigmas = predictor.run(batch)
        for (name, width, height, crop, _), c, s in zip(pending, coords, sigmas, strict=True):
            keypoints, scales = crop_to_source(c, s, crop, size, mirrored)
            predictions.append(ImagePrediction(name, width, height, box, crop, mirrored, keypoints, scales))
        pending.clear()

    for image_path in images:
        name = str(image_path)
        try:
            image = read_image(name)
            height, width = image.shape[:2]
            crop = crop_for((width, height), box, box_scale, DEFAULT_MIN_SIDE, name)
        except ImageError as error:
            failures.append(Failure(name, str(error)))
            continue
        pending.append((name, width, height, crop, crop_image(image, crop, size, mirrored)))
        if len(pending) >= batch_size:
            flush()
    flush()
    return predictions, failures


# ---------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------


def overlay(prediction: ImagePrediction, image: np.ndarray | None = None) -> np.ndarray:
    """The source image (H, W, 3) uint8 with the predicted skeleton and the crop square drawn on it."""
    from mle_hand_pipeline.evaluation.drawing import draw_skeleton

    pixels = read_image(prediction.image) if image is None else image
    scale = max(pixels.shape[:2]) / 320  # marks sized for a 320 px image, scaled with the image
    drawn = draw_skeleton(
        pixels, prediction.keypoints, radius=max(2.0, 3 * scale), line_width=max(1, round(2 * scale))
    )
    pil = Image.fromarray(drawn)
    crop = prediction.crop
    ImageDraw.Draw(pil).rectangle(
        [crop.x0, crop.y0, crop.x0 + crop.side, crop.y0 + crop.side],
        outline=(255, 255, 0),
        width=max(1, round(scale)),
    )
    return np.asarray(pil)


def keypoints_rows(predictions: Sequence[ImagePrediction]) -> list[dict[str, Any]]:
    """One row per (image, keypoint): image, keypoint, name, x, y, sigma_x, sigma_y (source pixels)."""
    return [
        {
            "image": p.image,
            "keypoint": k,
            "name": KEYPOINT_NAMES[k],
            "x": float(p.keypoints[k, 0]),
            "y": float(p.keypoints[k, 1]),
            "sigma_x": float(p.sigmas[k, 0]),
            "sigma_y": float(p.sigmas[k, 1]),
        }
        for p in predictions
        for k in range(len(p.keypoints))
    ]


def overlay_names(predictions: Sequence[ImagePrediction]) -> list[str]:
    """A distinct file stem per prediction (the image's stem, numbered when two images share one)."""
    names: list[str] = []
    taken: set[str] = set()
    for p in predictions:
        stem = name = Path(p.image).stem
        number = 0
        while name in taken:  # a numbered name may itself be an image's stem (x, x, x_1)
            number += 1
            name = f"{stem}_{number}"
        taken.add(name)
        names.append(name)
    return names


def predictions_document(
    predictions: Sequence[ImagePrediction], failures: Sequence[Failure], predictor: Predictor | None = None
) -> dict[str, Any]:
    """The JSON document of a prediction run: ``model``, ``backend``, ``input_size``, ``units``,
    ``predictions`` (one :meth:`ImagePrediction.to_record` per image) and ``failures`` (image and error)."""
    return {
        "model": None if predictor is None else predictor.source,
        "backend": None if predictor is None else predictor.backend,
        "input_size": None if predictor is None else predictor.input_size,
        "units": "source-image pixels; pixel i covers [i, i + 1)",
        "predictions": [p.to_record() for p in predictions],
        "failures": [f.to_record() for f in failures],
    }


@dataclass
class WrittenOutputs:
    """Files written by :func:`write_outputs`."""

    json: Path
    csv: Path
    overlays: list[Path] = field(default_factory=list)


OUTPUT_NAMES = ("predictions.json", "keypoints.csv", "overlays")


def check_out_dir(out_dir: str | Path, replace: bool = False) -> None:
    """Refuse an ``out_dir`` that already holds files unless ``replace`` (a previous run's results are
    never overwritten silently); with ``replace``, only files a prediction run writes may be there."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} is a file, not a folder: choose another output folder")
    present = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
    if present and not replace:
        raise FileExistsError(
            f"{out_dir} is not empty ({', '.join(present[:5])}{', ...' if len(present) > 5 else ''}): choose "
            "another output folder, or replace the previous results (mle-hand predict --replace)"
        )
    others = [name for name in present if name not in OUTPUT_NAMES]
    if others:
        raise FileExistsError(
            f"{out_dir} holds files a prediction run does not write ({', '.join(others[:5])}): "
            "choose another output folder"
        )


def write_outputs(
    predictions: Sequence[ImagePrediction],
    failures: Sequence[Failure],
    out_dir: str | Path,
    predictor: Predictor | None = None,
    replace: bool = False,
) -> WrittenOutputs:
    """Write ``predictions.json`` (everything), ``keypoints.csv`` (one row per keypoint) and
    ``overlays/<image stem>.png`` under ``out_dir``: a new or empty folder, or with ``replace`` one of
    an earlier run, whose results are removed first (:func:`check_out_dir`)."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir, replace)
    shutil.rmtree(out_dir / "overlays", ignore_errors=True)
    for name in OUTPUT_NAMES[:2]:
        (out_dir / name).unlink(missing_ok=True)
    (out_dir / "overlays").mkdir(parents=True)
    json_path = out_dir / "predictions.json"
    json_path.write_text(json.dumps(predictions_document(predictions, failures, predictor), indent=2))
    csv_path = out_dir / "keypoints.csv"
    rows = keypoints_rows(predictions)
    with csv_path.open("w", newline="") as file:
        writer = csv.DictWriter(file, ["image", "keypoint", "name", "x", "y", "sigma_x", "sigma_y"])
        writer.writeheader()
        writer.writerows(rows)
    written = WrittenOutputs(json_path, csv_path)
    for prediction, stem in zip(predictions, overlay_names(predictions), strict=True):
        path = out_dir / "overlays" / f"{stem}.png"
        Image.fromarray(overlay(prediction)).save(path)
        written.overlays.append(path)
    return written
