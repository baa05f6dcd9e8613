"""Backbone checkpoints: saved weights-only, loaded into the backbone only, heads untouched."""

from __future__ import annotations

import logging

import pytest
import torch

from mle_hand_pipeline.io import TorchCheckpointDataset
from mle_hand_pipeline.training.checkpoint import ModelSpec, warm_start
from mle_hand_pipeline.training.pretrained import BACKBONE_FORMAT, backbone_checkpoint

SPEC = ModelSpec(method="mle", backbone="resnet18", stages=2, input_size=64, head_channels=16)


def _pretrained(tmp_path, method="integral", backbone="resnet18"):
    """A 'pretrained' network (seeded init stands in for training) and its backbone checkpoint file."""
    torch.manual_seed(7)
    source = ModelSpec(**{**SPEC.__dict__, "method": method, "backbone": backbone, "stages": 1}).build_model()
    path = tmp_path / "pretrained_backbone.pt"
    TorchCheckpointDataset(str(path)).save(backbone_checkpoint(source, {"method": method}))
    return source, path


@pytest.mark.parametrize("method", ["mle", "rle"])  # the two network families: stages, and fc heads
def test_init_from_backbone_checkpoint_loads_backbone_and_keeps_fresh_heads(tmp_path, caplog, method):
    source, path = _pretrained(tmp_path)
    # weights only: plain torch.load with weights_only=True reads it, no code runs
    state = torch.load(path, weights_only=True)
    assert state["format"] == BACKBONE_FORMAT and state["backbone"] == "resnet18"
    assert all(k.startswith("body.") for k in state["weights"])

    torch.manual_seed(123)
    target = ModelSpec(**{**SPEC.__dict__, "method": method}).build_model()
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    with caplog.at_level(logging.INFO):
        warm_start(target, path)
    loaded = target.state_dict()
    backbone = [k for k in loaded if k.startswith("backbone.")]
    heads = [k for k in loaded if not k.startswith("backbone.")]
    assert backbone and heads
    for key in backbone:  # identical to the pretrained network's backbone, buffers included
        torch.testing.assert_close(loaded[key], source.state_dict()[key], rtol=0, atol=0)
    assert any(not torch.equal(loaded[k], fresh[k]) for k in backbone)
    for key in heads:  # untouched: exactly the fresh initialisation
        assert torch.equal(loaded[key], fresh[key]), key
    assert "backbone tensors loaded" in caplog.text and "head tensors start fresh" in caplog.text


def test_a_backbone_stopped_early_loads_the_layers_it_has(tmp_path):
    source, path = _pretrained(tmp_path)  # a whole ResNet-18 (stride 32)
    target = ModelSpec(**{**SPEC.__dict__, "backbone_stride": 8}).build_model()
    warm_start(target, path, log=False)
    own = target.backbone.state_dict()
    assert not any(k.startswith("body.layer3") or k.startswith("body.layer4") for k in own)
    for key, value in own.items():
        torch.testing.assert_close(value, source.backbone.state_dict()[key], rtol=0, atol=0)


def test_a_backbone_checkpoint_missing_layers_the_model_has_is_refused(tmp_path):
    torch.manual_seed(7)
    source = ModelSpec(**{**SPEC.__dict__, "backbone_stride": 16}).build_model()
    path = tmp_path / "pretrained_backbone.pt"
    TorchCheckpointDataset(str(path)).save(backbone_checkpoint(source, {"method": "mle"}))
    target = SPEC.build_model()  # the whole ResNet-18 needs layer4 too
    with pytest.raises(ValueError, match=r"do not fit: missing.*layer4"):
        warm_start(target, path, log=False)


def test_backbone_of_another_resnet_is_refused(tmp_path):
    _, path = _pretrained(tmp_path, backbone="resnet18")
    target = ModelSpec(**{**SPEC.__dict__, "backbone": "resnet34"}).build_model()
    with pytest.raises(ValueError, match="resnet18 backbone checkpoint cannot initialise a resnet34"):
        warm_start(target, path, log=False)


def test_cpm_has_no_resnet_and_trains_from_scratch(tmp_path, caplog):
    _, path = _pretrained(tmp_path)
    cpm = ModelSpec(**{**SPEC.__dict__, "method": "cpm"}).build_model()
    fresh = {k: v.clone() for k, v in cpm.state_dict().items()}
    warm_start(cpm, path)
    assert all(torch.equal(v, fresh[k]) for k, v in cpm.state_dict().items())
    assert "trains from scratch" in caplog.text
    with pytest.raises(ValueError, match="no ResNet backbone"):
        backbone_checkpoint(cpm)
