"""Every method's exports (ONNX, pt2, image pyfunc) reproduce PyTorch on inputs that change the output.

Freshly initialised heads predict (nearly) the crop centre for every input, so an export that ignored
its input would still "match". Here each model's small-initialised output layers are scaled up until
its keypoints move by more than a pixel between inputs, and every comparison also checks that the
outputs do differ between the inputs compared.
"""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from predict_helpers import FREIHAND_IMAGES, RHD_IMAGES

from mle_hand_pipeline import pyfunc_model
from mle_hand_pipeline.export import ONNX_TOLERANCE_PX, PackedKeypoints, log_onnx_and_pyfunc
from mle_hand_pipeline.methods import METHODS, build_model
from mle_hand_pipeline.models import InferenceWrapper

pytestmark = pytest.mark.slow  # exports of real models: `pytest -m "not slow"` leaves them out

SIZE = 64
MIN_SPREAD_PX = 1.0  # mean over keypoints of the std of a coordinate across inputs
# Each method, and mle decoding by soft-argmax around the argmax (model.decode_window)
VARIANTS = {**{method: (method, {}) for method in METHODS}, "mle_window": ("mle", {"decode_window": 1})}


def _spread(coords: torch.Tensor) -> float:
    return float(coords.std(dim=0).mean())


def varied_model(variant: str, seed: int = 0) -> torch.nn.Module:
    """A tiny untrained model of a VARIANTS entry (eval mode) whose keypoints move with the input.

    Output layers start at std 0.001 (heatmap heads) or xavier gain 0.01 (RLE): their weights are
    doubled until the keypoints of random probe images spread by MIN_SPREAD_PX, a gentle scaling that
    keeps soft-argmax maps smooth (very sharp maps amplify float rounding differences).
    """
    torch.manual_seed(seed)
    method, options = VARIANTS[variant]
    model = build_model(
        method, backbone="resnet18", stages=2, input_size=SIZE, head_channels=8, **options
    ).eval()
    layers = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)
    small = [m for m in model.modules() if isinstance(m, layers) and float(m.weight.detach().std()) < 0.01]
    probe = torch.randn(6, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for _ in range(20):
            if _spread(InferenceWrapper(model)(probe)[0]) > MIN_SPREAD_PX:
                return model
            for layer in small:
                layer.weight.mul_(2.0)
    raise AssertionError(f"{variant}: could not make the keypoints depend on the input")


def _inputs() -> torch.Tensor:
    """Six distinct normalised inputs: four real crops (whole images) and two noise images."""
    images = [np.asarray(Image.open(path).convert("RGB")) for path in [*FREIHAND_IMAGES[:2], *RHD_IMAGES[:2]]]
    crops = [pyfunc_model.crop_image(i, pyfunc_model.crop_for(i.shape[1::-1], None), SIZE) for i in images]
    real = torch.from_numpy(pyfunc_model.normalise(np.stack(crops)))
    return torch.cat([real, torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))])


@pytest.fixture(scope="module")
def mlflow_experiment(tmp_path_factory):
    """One temporary MLflow store (SQLite) shared by the methods' runs; creating a store is slow."""
    import mlflow

    root = tmp_path_factory.mktemp("export_methods")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    yield mlflow.create_experiment("export_methods", artifact_location=(root / "artifacts").as_uri())
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module", params=list(VARIANTS))
def exported(request, mlflow_experiment) -> dict:
    """One method's varied model, its ONNX graph and image pyfunc (one MLflow run) and its pt2 program."""
    import mlflow

    model = varied_model(request.param)
    with mlflow.start_run(experiment_id=mlflow_experiment) as run:
        check = log_onnx_and_pyfunc(model, SIZE, name="pyfunc_model")
    # The pt2 format of export.log_mlflow_model: torch.export of PackedKeypoints with a dynamic batch
    # axis (what mlflow.pytorch does with the signature's -1). Its file format is method-independent
    # and covered by tests/test_export.py, so the program is used without a save/load round trip.
    program = torch.export.export(
        PackedKeypoints(model), (torch.zeros(2, 3, SIZE, SIZE),), dynamic_shapes=[{0: torch.export.Dim.AUTO}]
    )
    return {
        "method": request.param,
        "model": model,
        "check": check,
        "onnx": mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="onnx/model.onnx"),
        "pyfunc": mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/pyfunc_model"),
        "pt2": program.module(),
    }


def _reference(model: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        coords, sigmas = InferenceWrapper(model.eval())(images)
    assert _spread(coords) > MIN_SPREAD_PX / 2  # these inputs give different keypoints
    return coords, sigmas


def test_onnx_matches_pytorch_on_distinct_inputs(exported):
    import onnxruntime as ort

    images = _inputs()
    coords, sigmas = _reference(exported["model"], images)
    session = ort.InferenceSession(exported["onnx"], providers=["CPUExecutionProvider"])
    onnx_coords, onnx_sigmas = session.run(None, {"images": images.numpy()})
    np.testing.assert_allclose(onnx_coords, coords.numpy(), atol=ONNX_TOLERANCE_PX, rtol=0)
    np.testing.assert_allclose(onnx_sigmas, sigmas.numpy(), atol=ONNX_TOLERANCE_PX, rtol=1e-5)
    assert exported["check"]["max_abs_diff_coords_px"] < ONNX_TOLERANCE_PX
    has_sigmas = VARIANTS[exported["method"]][0] in ("mle", "rle")
    assert (sigmas > 0).all() if has_sigmas else (sigmas == 0).all()


def test_pt2_matches_pytorch_on_distinct_inputs(exported):
    images = _inputs()[:5]  # another batch size than the export example's
    coords, sigmas = _reference(exported["model"], images)
    with torch.no_grad():
        packed = exported["pt2"](images)
    assert packed.shape == (5, 21, 4)
    torch.testing.assert_close(packed, torch.cat([coords, sigmas], dim=-1), atol=1e-4, rtol=1e-5)


def test_image_pyfunc_matches_pytorch_in_source_pixels(exported):
    """The pyfunc crops, runs the ONNX graph and maps back; compare with PyTorch on the same crops."""
    paths = [FREIHAND_IMAGES[0], FREIHAND_IMAGES[1], RHD_IMAGES[0]]
    boxes = [None, (40.0, 50.0, 150.0, 170.0), (60.0, 40.0, 200.0, 160.0)]
    mirrored = [False, False, True]
    frame = {
        "image_b64": [base64.b64encode(p.read_bytes()).decode() for p in paths],  # as a client sends them
        "x0": [np.nan if b is None else b[0] for b in boxes],
        "y0": [np.nan if b is None else b[1] for b in boxes],
        "x1": [np.nan if b is None else b[2] for b in boxes],
        "y1": [np.nan if b is None else b[3] for b in boxes],
        "mirrored": mirrored,
    }
    out = exported["pyfunc"].predict(pd.DataFrame(frame))
    crops, pixels = [], []
    for path, box, mirror in zip(paths, boxes, mirrored, strict=True):
        image = np.asarray(Image.open(path).convert("RGB"))
        crop = pyfunc_model.crop_for(image.shape[1::-1], box)
        crops.append(crop)
        pixels.append(pyfunc_model.crop_image(image, crop, SIZE, mirror))
    coords, sigmas = _reference(exported["model"], torch.from_numpy(pyfunc_model.normalise(np.stack(pixels))))
    for index, (crop, mirror) in enumerate(zip(crops, mirrored, strict=True)):
        points, point_sigmas = pyfunc_model.crop_to_source(
            coords[index].numpy(), sigmas[index].numpy(), crop, SIZE, mirror
        )
        scale = crop.side / SIZE  # source pixels per crop pixel
        np.testing.assert_allclose(out["keypoints"][index], points, atol=ONNX_TOLERANCE_PX * scale, rtol=0)
        np.testing.assert_allclose(
            out["sigmas"][index], point_sigmas, atol=ONNX_TOLERANCE_PX * scale, rtol=1e-5
        )
