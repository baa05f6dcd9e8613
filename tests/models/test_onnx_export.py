"""The inference wrapper exports to ONNX (legacy exporter, dynamic batch) and matches PyTorch."""

import io

import pytest
import torch

from mle_hand_pipeline.methods import build_model
from mle_hand_pipeline.models import InferenceWrapper

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.mark.parametrize("method", ["mle", "heatmap_l2"])
def test_inference_wrapper_exports_to_onnx(method):
    torch.manual_seed(0)
    model = build_model(method, backbone="resnet18", stages=2, input_size=64, head_channels=8).eval()
    wrapper = InferenceWrapper(model).eval()
    buffer = io.BytesIO()
    torch.onnx.export(
        wrapper,
        (torch.randn(1, 3, 64, 64),),
        buffer,
        dynamo=False,
        input_names=["images"],
        output_names=["coords_px", "sigmas_px"],
        dynamic_axes={"images": {0: "batch"}},
    )
    images = torch.randn(3, 3, 64, 64)
    coords, sigmas = ort.InferenceSession(buffer.getvalue()).run(None, {"images": images.numpy()})
    with torch.no_grad():
        ref_coords, ref_sigmas = wrapper(images)
    torch.testing.assert_close(torch.from_numpy(coords), ref_coords, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(torch.from_numpy(sigmas), ref_sigmas, atol=1e-3, rtol=1e-4)
