"""A standalone MLflow pyfunc: hand images in, 21 keypoints and their sigmas in SOURCE-image pixels out.

This file is logged as MLflow "models from code" by :func:`mle_hand_pipeline.export.log_mlflow_model`:
MLflow copies it into the model folder together with the ONNX graph of the network (stage T only,
no flows) and a small JSON config. Loading the model therefore needs only ``mlflow``, ``numpy``,
``pandas``, ``pillow`` and ``onnxruntime`` (no torch, no Kedro, not this package), so the same model
serves through ``mlflow.pyfunc.load_model(...)``, ``mlflow models predict`` and ``mlflow models serve``.
Keep the imports here to those packages.

``predict`` accepts:

- a numpy array ``(N, H, W, 3)`` (or one ``(H, W, 3)`` image): integer arrays are 0-255; float arrays
  are read as 0-1 when their maximum is at most 1, else as 0-255. The whole image is the crop.
- a list of encoded image files as ``bytes`` (PNG, JPEG, ...).
- a pandas DataFrame with a column ``image_b64`` (each cell an image file, base64-encoded: what a remote
  client sends to ``mlflow models serve``) or ``image`` (paths, see below) and, optionally, the hand box
  columns ``x0``, ``y0``, ``x1``, ``y1`` (source pixels; NaN = whole image) and a bool column ``mirrored``.
- a list of image paths (or one path), read only under an image root the model was loaded with
  (``model_config={"image_root": FOLDER}``, or ``MLE_HAND_IMAGE_ROOT`` in the serving process): without
  one, paths are refused, so a remote caller can never choose which of the server's files is read.
  Within the root, a path (relative to it, or absolute inside it) must resolve, symlinks followed, to a
  regular file inside it.

Each request is bounded (``model_config`` keys, defaults in :data:`DEFAULT_LIMITS`): ``max_images`` per
call, ``max_image_bytes`` per encoded image or file, ``max_pixels`` per image (checked from the
image's header before it is decoded, so a decompression bomb never reaches memory). Bad input raises
:class:`ImageError`, a ``ValueError`` that MLflow's scoring server answers with HTTP 400 and its
one-line message.

It returns a dict of numpy arrays:

- ``keypoints`` (N, K, 2): ``(x, y)`` in source-image pixels (pixel ``i`` covers ``[i, i + 1)``).
- ``sigmas`` (N, K, 2): ``(sigma_x, sigma_y)`` in source-image pixels (zeros for methods without
  uncertainty).
- ``crop_boxes`` (N, 3): the square ``(x0, y0, side)`` that was resampled to the model input.

Crop rule (the same as preprocessing, :mod:`mle_hand_pipeline.datasets.crops`): with a hand box, the
square of side ``max(box_scale * max(w, h), min_side)`` centred on the box (``box_scale`` 1.5 as in
training, where the box is the tight box of the visible keypoints); without one, the square of side
``max(H, W)`` centred on the image. Pixels outside the image are black, as in the training crops.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from PIL import Image, ImageOps

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
DEFAULT_BOX_SCALE = 1.5  # crop.scale of preprocessing: crop side / tight keypoint box side
DEFAULT_MIN_SIDE = 16.0  # crop.min_side of preprocessing
DEFAULT_LIMITS = {"max_images": 64, "max_image_bytes": 20 * 2**20, "max_pixels": 40_000_000}
IMAGE_ROOT_VARIABLE = "MLE_HAND_IMAGE_ROOT"


class ImageError(MlflowException, ValueError):
    """An image that cannot be read, a box that does not fit it, or a request over a limit; the message
    names the image. An ``MlflowException`` with ``INVALID_PARAMETER_VALUE``: the scoring server answers
    it with HTTP 400 and this message, not a stack trace."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class InputCrop:
    """The square ``[x0, x0 + side) x [y0, y0 + side)`` of the source, resampled to the model input.

    The same geometry as preprocessing's :class:`mle_hand_pipeline.datasets.crops.CropBox`, restated
    here because this file must load without the project package (models from code)."""

    x0: float
    y0: float
    side: float


# Pillow's 16- and 32-bit integer modes (16-bit greyscale PNG/TIFF): convert("RGB") clips them at 255.
_WIDE_INTEGER_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def read_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Decode ``path`` fully into an (H, W, 3) uint8 RGB array as it is displayed; :class:`ImageError`
    names the file.

    The EXIF orientation is applied (a phone photo taken upright is upright here, and its width and
    height are the displayed ones); 16-bit images are scaled to 0-255 (value / 257), not clipped. An
    image of more than ``max_pixels`` is refused from its header, before its pixels are decoded.
    """
    try:
        return _decode(path, str(path), max_pixels)
    except FileNotFoundError as error:
        raise ImageError(f"{path}: no such image file") from error


def decode_image(data: bytes, name: str = "image", max_pixels: int | None = None) -> np.ndarray:
    """:func:`read_image` for an encoded image file held in memory (``bytes``)."""
    return _decode(io.BytesIO(data), name, max_pixels)


def _decode(source, name: str, max_pixels: int | None) -> np.ndarray:
    try:
        with Image.open(source) as opened:
            width, height = opened.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageError(
                    f"{name}: {width}x{height} is {width * height} pixels, more than this model takes "
                    f"({max_pixels}); send a smaller image"
                )
            opened.load()  # decodes all of it: truncation shows here
            image = ImageOps.exif_transpose(opened)
            if image.mode in _WIDE_INTEGER_MODES:
                return _wide_to_uint8(np.asarray(image), image.mode)
            return np.asarray(image.convert("RGB"))
    except (ImageError, FileNotFoundError):
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ImageError(f"{name}: cannot read image ({type(error).__name__}: {error})") from error


def _wide_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """A greyscale image of Pillow mode ``I;16*`` or ``I`` as (H, W, 3) uint8: 16-bit values / 257
    (65535 -> 255); an ``I`` image whose values fit in 8 bits is kept as it is."""
    values = values.astype(np.float64)
    if mode.startswith("I;16") or values.max(initial=0) > 255:
        values = values / 257.0
    grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def as_uint8_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """An (H, W, 3) array as uint8 0-255 (see the module docstring for how floats are read)."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3 or min(array.shape[:2]) < 1:
        raise ImageError(f"{name}: expected an (H, W, 3) RGB image, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ImageError(f"{name}: expected a numeric image, got dtype {array.dtype}")
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise ImageError(f"{name}: the image holds NaN or infinite values")
    if np.issubdtype(array.dtype, np.floating) and values.max(initial=0.0) <= 1.0:
        values = values * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def crop_for(
    image_size: tuple[int, int],
    box: Sequence[float] | None,
    box_scale: float = DEFAULT_BOX_SCALE,
    min_side: float = DEFAULT_MIN_SIDE,
    name: str = "image",
) -> InputCrop:
    """The square crop for a hand ``box`` ``(x0, y0, x1, y1)`` in an image of ``(width, height)``.

    ``box`` None: the square of side ``max(width, height)`` centred on the image. A box must be
    non-empty and lie inside the image (a box outside it is almost always a coordinate mix-up).
    """
    width, height = image_size
    if box is None:
        side = float(max(width, height))
        return InputCrop((width - side) / 2, (height - side) / 2, side)
    if len(box) != 4 or not all(math.isfinite(float(v)) for v in box):
        raise ImageError(f"{name}: a box is four finite numbers x0,y0,x1,y1, got {list(box)}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x0 < x1 and y0 < y1):
        raise ImageError(f"{name}: empty box ({x0:g}, {y0:g}, {x1:g}, {y1:g}): need x0 < x1 and y0 < y1")
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise ImageError(
            f"{name}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) lies outside the {width}x{height} image "
            f"(need 0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height})"
        )
    side = max(box_scale * max(x1 - x0, y1 - y0), min_side)
    return InputCrop((x0 + x1) / 2 - side / 2, (y0 + y1) / 2 - side / 2, side)


def crop_image(image: np.ndarray, crop: InputCrop, size: int, mirrored: bool = False) -> np.ndarray:
    """Resample ``crop`` of an (H, W, 3) uint8 image to (size, size, 3) uint8, black outside the image.

    Exactly :func:`mle_hand_pipeline.datasets.crops.warp_crop` (bicubic, same pixel convention), kept
    as a copy so that this file needs only Pillow; a test checks the two agree.
    """
    step = crop.side / size
    if mirrored:
        coefficients = (-step, 0.0, crop.x0 + crop.side, 0.0, step, crop.y0)
    else:
        coefficients = (step, 0.0, crop.x0, 0.0, step, crop.y0)
    pil = Image.fromarray(np.ascontiguousarray(image), mode="RGB")
    return np.asarray(
        pil.transform((size, size), Image.Transform.AFFINE, coefficients, Image.Resampling.BICUBIC)
    )


def normalise(crops: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 crops -> (N, 3, S, S) float32 ImageNet-normalised model input."""
    scaled = crops.astype(np.float32) / 255.0
    return np.ascontiguousarray(((scaled - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2))


def crop_to_source(
    coords: np.ndarray, sigmas: np.ndarray, crop: InputCrop, size: int, mirrored: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) crop-pixel keypoints and sigmas -> source pixels (inverse of the crop's resampling)."""
    scale = crop.side / size
    u = size - coords[..., 0] if mirrored else coords[..., 0]
    points = np.stack([crop.x0 + u * scale, crop.y0 + coords[..., 1] * scale], axis=-1)
    return points, sigmas * scale  # a mirror flips x but not the size of its uncertainty


@dataclass
class _Item:
    name: str
    image: np.ndarray | None  # None: decoded from `data`, else read from the path `name`
    box: Sequence[float] | None
    mirrored: bool
    data: bytes | None = None


def _items(model_input) -> list[_Item]:
    """Normalise every accepted input form into a list of images with their box and mirror flag."""
    if isinstance(model_input, pd.DataFrame):
        return _frame_items(model_input)
    if isinstance(model_input, bytes):
        model_input = [model_input]
    if (
        isinstance(model_input, list | tuple)
        and model_input
        and all(isinstance(b, bytes) for b in model_input)
    ):
        return [_Item(f"images[{i}]", None, None, False, data) for i, data in enumerate(model_input)]
    if isinstance(model_input, str | Path):
        return [_Item(str(model_input), None, None, False)]
    if (
        isinstance(model_input, list | tuple)
        and model_input
        and all(isinstance(p, str | Path) for p in model_input)
    ):
        return [_Item(str(p), None, None, False) for p in model_input]
    array = np.asarray(model_input)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ImageError(
            f"expected images (N, H, W, 3), one image (H, W, 3), image files as bytes, image paths or a "
            f"DataFrame with an 'image_b64' or 'image' column; got an array of shape {array.shape}"
        )
    return [_Item(f"images[{i}]", image, None, False) for i, image in enumerate(array)]


def _frame_items(frame: pd.DataFrame) -> list[_Item]:
    encoded = "image_b64" in frame.columns
    if not encoded and "image" not in frame.columns:
        raise ImageError(
            f"a DataFrame needs an 'image_b64' column (base64 image files) or an 'image' column (paths); "
            f"got columns {[str(c) for c in frame.columns][:10]}"
        )
    has_box = all(c in frame.columns for c in ("x0", "y0", "x1", "y1"))
    items = []
    for index, row in enumerate(frame.itertuples(index=False)):
        values = row._asdict()
        box = None
        if has_box and not pd.isna(values["x0"]):
            box = [float(values[c]) for c in ("x0", "y0", "x1", "y1")]
        mirrored = bool(values["mirrored"]) if "mirrored" in frame.columns else False
        if encoded:
            name = f"image_b64[{index}]"
            items.append(_Item(name, None, box, mirrored, _base64(values["image_b64"], name)))
        else:
            items.append(_Item(str(values["image"]), None, box, mirrored))
    return items


def _base64(value, name: str) -> bytes:
    if not isinstance(value, str | bytes):
        raise ImageError(f"{name}: expected a base64 string, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ImageError(f"{name}: not valid base64 ({error})") from None


def allowed_image_path(name: str, root: str | Path | None) -> Path:
    """The regular file ``name`` names under ``root`` (relative to it, or absolute inside it), symlinks
    followed; :class:`ImageError` for a path outside the root (said before the file system is asked, so
    an answer never tells whether a file exists elsewhere), a missing or special file, or no root."""
    if not root:
        raise ImageError(
            f"{name}: this model reads no image paths: send the image file itself (base64 in an "
            f"'image_b64' column, or bytes), or load the model with an image root (model_config "
            f"{{'image_root': FOLDER}}, or {IMAGE_ROOT_VARIABLE} for mlflow models serve)"
        )
    base = Path(os.path.abspath(root))
    lexical = Path(os.path.normpath(base / name))
    if not lexical.is_relative_to(base):
        raise ImageError(f"{name}: outside the image root")
    real = lexical.resolve()
    if not real.is_relative_to(base.resolve()):
        raise ImageError(f"{name}: outside the image root")
    try:
        mode = real.stat().st_mode
    except OSError:
        raise ImageError(f"{name}: no such image file") from None
    if not stat.S_ISREG(mode):
        raise ImageError(f"{name}: not a regular file")
    return real


class HandPoseModel(mlflow.pyfunc.PythonModel):
    """The pyfunc: crops, normalises, runs the ONNX graph and maps keypoints back to the source."""

    # MLflow wraps a subclass's ``predict`` to validate inputs against its type hints, and warns when
    # there are none. This model takes several input forms on purpose (arrays, paths, DataFrames), so
    # it has none; this attribute (MLflow's own opt-out, used by its ChatModel) skips the wrapping.
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        import onnxruntime as ort  # imported here: logging this model must not need onnxruntime

        config = json.loads(Path(context.artifacts["config"]).read_text())
        options = dict(getattr(context, "model_config", None) or {})
        self.limits = {
            key: int(options.get(key, config.get(key, value))) for key, value in DEFAULT_LIMITS.items()
        }
        self.image_root = options.get("image_root") or os.environ.get(IMAGE_ROOT_VARIABLE) or None
        self.input_size = int(config["input_size"])
        self.box_scale = float(config.get("box_scale", DEFAULT_BOX_SCALE))
        self.min_side = float(config.get("min_side", DEFAULT_MIN_SIDE))
        self.batch_size = int(config.get("batch_size", 16))
        # onnxruntime-gpu offers CUDA when a GPU is usable; the CPU provider is the fallback for any node.
        providers = [
            p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()
        ]
        self.session = ort.InferenceSession(context.artifacts["onnx"], providers=providers)

    def predict(self, context, model_input, params=None):
        items = _items(model_input)
        if not items:
            raise ImageError("no images given")
        if len(items) > self.limits["max_images"]:
            raise ImageError(
                f"{len(items)} images in one request; this model takes at most {self.limits['max_images']}"
            )
        size = self.input_size
        crops, boxes, mirrors = [], [], []
        for item in items:
            image = self._image(item)
            height, width = image.shape[:2]
            crop = crop_for((width, height), item.box, self.box_scale, self.min_side, item.name)
            crops.append(crop_image(image, crop, size, item.mirrored))
            boxes.append(crop)
            mirrors.append(item.mirrored)
        coords, sigmas = [], []
        for start in range(0, len(crops), self.batch_size):
            batch = normalise(np.stack(crops[start : start + self.batch_size]))
            out_coords, out_sigmas = self.session.run(["coords_px", "sigmas_px"], {"images": batch})
            coords.append(out_coords)
            sigmas.append(out_sigmas)
        coords_crop, sigmas_crop = np.concatenate(coords), np.concatenate(sigmas)
        keypoints, scales = zip(
            *(
                crop_to_source(c, s, box, size, m)
                for c, s, box, m in zip(coords_crop, sigmas_crop, boxes, mirrors, strict=True)
            ),
            strict=True,
        )
        return {
            "keypoints": np.stack(keypoints).astype(np.float32),
            "sigmas": np.stack(scales).astype(np.float32),
            "crop_boxes": np.array([[b.x0, b.y0, b.side] for b in boxes], dtype=np.float32),
        }

    def _image(self, item: _Item) -> np.ndarray:
        """The (H, W, 3) uint8 image of ``item``, within the request limits."""
        max_bytes, max_pixels = self.limits["max_image_bytes"], self.limits["max_pixels"]
        if item.image is not None:
            image = as_uint8_image(item.image, item.name)
            if image.shape[0] * image.shape[1] > max_pixels:
                raise ImageError(f"{item.name}: more than {max_pixels} pixels; send a smaller image")
            return image
        if item.data is not None:
            if len(item.data) > max_bytes:
                raise ImageError(
                    f"{item.name}: {len(item.data)} bytes, more than this model takes ({max_bytes})"
                )
            return decode_image(item.data, item.name, max_pixels)
        path = allowed_image_path(item.name, self.image_root)
        if path.stat().st_size > max_bytes:
            raise ImageError(f"{item.name}: more than {max_bytes} bytes")
        return _decode(path, item.name, max_pixels)  # messages name the path as sent, not the server's


# MLflow "models from code": loading this file as the model's code registers the model instance.
# Importing the module elsewhere (mle_hand_pipeline.predict) only sets MLflow's unused global.
mlflow.models.set_model(HandPoseModel())
