"""Every method's output shapes, the inference wrapper and the backbone."""

import re
import urllib.error
from pathlib import Path

import pytest
import torch

import mle_hand_pipeline.models as models_pkg
from mle_hand_pipeline.methods import METHODS, build_model
from mle_hand_pipeline.models import InferenceWrapper, PoseOutput, ResNetBackbone

K = 21
STAGES = 2
SMALL = {"backbone": "resnet18", "stages": STAGES, "head_channels": 16}
HAS_SIGMA = {"mle", "rle"}


def expected_stages(method: str) -> int:
    return 1 if method == "rle" else STAGES


def expected_map_size(method: str, size: int) -> int | None:
    return {"rle": None, "cpm": size // 8}.get(method, size // 4)


@pytest.mark.parametrize("size", [128, 256])
@pytest.mark.parametrize("method", METHODS)
def test_output_shapes(method, size):
    torch.manual_seed(0)
    model = build_model(method, input_size=size, **SMALL)
    t = expected_stages(method)
    for batch in (1, 3):
        model.train(batch > 1)  # BatchNorm needs eval mode for a batch of one
        out = model(torch.randn(batch, 3, size, size))
        assert isinstance(out, PoseOutput)
        assert out.coords.shape == (batch, t, K, 2)
        assert out.coords.shape[1] == t
        assert torch.isfinite(out.coords).all()
        if method in HAS_SIGMA:
            assert out.sigmas.shape == (batch, t, K, 2)
            assert (out.sigmas > 0).all()
        else:
            assert out.sigmas is None
        hm = expected_map_size(method, size)
        if hm is None:
            assert out.heatmaps is None
        else:
            assert out.heatmaps.shape == (batch, t, K, hm, hm)
            assert (out.coords.abs() <= 0.5).all()  # decoded from the map: inside the crop


@pytest.mark.parametrize("method", METHODS)
def test_inference_wrapper_last_stage_in_pixels(method):
    size = 128
    torch.manual_seed(0)
    model = build_model(method, input_size=size, **SMALL).eval()
    images = torch.randn(2, 3, size, size)
    coords_px, sigmas_px = InferenceWrapper(model)(images)
    assert coords_px.shape == sigmas_px.shape == (2, K, 2)
    assert coords_px.dtype == sigmas_px.dtype == torch.float32
    out = model(images)
    torch.testing.assert_close(coords_px, (out.coords[:, -1] + 0.5) * size)
    if method in HAS_SIGMA:
        torch.testing.assert_close(sigmas_px, out.sigmas[:, -1] * size)
    else:
        assert (sigmas_px == 0).all()


def test_paper_model_defaults_structure():
    model = build_model("mle", backbone="resnet18", stages=3, head_channels=8)
    assert len(model.stages) == 3
    assert model.stages[0].heatmap_proj is None and model.stages[1].heatmap_proj is not None
    deconvs = [m for m in model.stages[0].heatmap_head.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(deconvs) == 3 and all(d.kernel_size == (4, 4) and d.stride == (2, 2) for d in deconvs)


def test_unknown_backbone_raises():
    with pytest.raises(ValueError, match="resnet50"):
        ResNetBackbone("vgg16")


@pytest.mark.parametrize(("name", "channels"), [("resnet18", 512), ("resnet50", 2048)])
def test_backbone_channels_and_stride(name, channels):
    backbone = ResNetBackbone(name).eval()
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, 64, 96))
    assert backbone.out_channels == channels
    assert feats.shape == (1, channels, 2, 3)


@pytest.mark.parametrize(
    ("name", "stride", "channels", "last"),
    [("resnet18", 16, 256, "layer3"), ("resnet18", 8, 128, "layer2"), ("resnet50", 8, 512, "layer2")],
)
def test_backbone_stopped_early_keeps_a_finer_grid(name, stride, channels, last):
    backbone = ResNetBackbone(name, output_stride=stride).eval()
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, 64, 96))
    assert (backbone.stride, backbone.out_channels) == (stride, channels)
    assert feats.shape == (1, channels, 64 // stride, 96 // stride)
    assert list(backbone.body._modules)[-1] == last


def test_backbone_stride_outside_the_resnet_stages_raises():
    with pytest.raises(ValueError, match=r"output_stride 4.*32, 16, 8"):
        ResNetBackbone("resnet18", output_stride=4)


@pytest.mark.parametrize(("stride", "deconvs"), [(32, 3), (16, 2), (8, 1)])
@pytest.mark.parametrize("method", ["mle", "integral", "heatmap_l2"])
def test_maps_stay_at_a_quarter_of_the_input_whatever_the_backbone_stride(method, stride, deconvs):
    torch.manual_seed(0)
    model = build_model(method, input_size=64, backbone_stride=stride, **SMALL)
    out = model(torch.randn(2, 3, 64, 64))
    assert out.heatmaps.shape == (2, STAGES, K, 16, 16)
    for stage in model.stages:
        assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in stage.heatmap_head.modules()) == deconvs
    # stage 2 reads stage 1's 16x16 maps pooled to the 64/stride feature grid
    assert model.stages[1].heatmap_pool.kernel_size == stride // 4


def test_rle_runs_on_a_backbone_stopped_early():
    torch.manual_seed(0)
    model = build_model("rle", input_size=64, backbone_stride=8, **SMALL)
    assert model.backbone.out_channels == 128
    assert model(torch.randn(2, 3, 64, 64)).coords.shape == (2, 1, K, 2)


def test_pretrained_without_network_gives_clear_error(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(RuntimeError) as info:
        build_model("mle", backbone="resnet18", stages=1, head_channels=8, pretrained=True)
    message = str(info.value)
    assert "model.pretrained: false" in message
    assert str(tmp_path / "checkpoints" / "resnet18-f37072fd.pth") in message


def test_pretrained_loads_cached_weights(monkeypatch):
    reference = ResNetBackbone("resnet18")
    full = {f"{k.removeprefix('body.')}": v.clone() + 1 for k, v in reference.state_dict().items()}
    full |= {"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", lambda *a, **k: full)
    loaded = ResNetBackbone("resnet18", pretrained=True)
    torch.testing.assert_close(loaded.body.conv1.weight, full["conv1.weight"])


def test_no_kedro_in_model_library_and_no_losses_in_models():
    models = Path(models_pkg.__file__).parent
    for package in (models, models.parent / "losses"):
        for source in package.glob("*.py"):
            assert not re.search(r"^\s*(import|from)\s+kedro", source.read_text(), re.M), source
    for source in models.glob("*.py"):  # the losses import the models; methods.py builds both
        assert not re.search(r"(import|from)\s+(\S*\.)?losses\b", source.read_text()), source


def flat_grad(parameters) -> torch.Tensor:
    """All gradients as one vector, zeros where backward never reached."""
    return torch.cat([torch.zeros(p.numel()) if p.grad is None else p.grad.flatten() for p in parameters])


@pytest.mark.parametrize("method", sorted(HAS_SIGMA))
def test_detach_sigma_input_stops_only_the_sigma_gradient_into_the_backbone(method):
    torch.manual_seed(0)
    model = build_model(method, input_size=64, **SMALL).train()
    images = torch.randn(4, 3, 64, 64)
    reference = model(images)

    def backbone_and_sigma_grads(detach: bool, use: str) -> tuple[torch.Tensor, torch.Tensor]:
        model.zero_grad()
        model.detach_sigma_input = detach
        out = model(images)
        torch.testing.assert_close(out.sigmas, reference.sigmas, rtol=0, atol=0)
        torch.testing.assert_close(out.coords, reference.coords, rtol=0, atol=0)
        (out.sigmas.log().sum() if use == "sigmas" else out.coords.sum()).backward()
        sigma_head = [p for n, p in model.named_parameters() if "variance" in n or "fc_sigma" in n]
        return flat_grad(model.backbone.parameters()), flat_grad(sigma_head)

    backbone, sigma_head = backbone_and_sigma_grads(detach=True, use="sigmas")
    assert backbone.abs().max() == 0 and sigma_head.abs().max() > 0
    backbone, _ = backbone_and_sigma_grads(detach=False, use="sigmas")
    assert backbone.abs().max() > 0
    coords_detached, _ = backbone_and_sigma_grads(detach=True, use="coords")
    coords_joint, _ = backbone_and_sigma_grads(detach=False, use="coords")
    torch.testing.assert_close(coords_detached, coords_joint, rtol=0, atol=0)
