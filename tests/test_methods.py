"""Each method's network and loss by name: errors, shared loss options, one sigma floor."""

import re

import pytest
import torch

from mle_hand_pipeline.methods import METHODS, build_loss, build_model
from mle_hand_pipeline.training.checkpoint import ModelSpec


def test_unknown_names_raise():
    with pytest.raises(ValueError, match=re.escape(", ".join(METHODS))):
        build_model("hrnet")
    with pytest.raises(ValueError, match="mle"):
        build_loss("hrnet", stages=1)


def test_build_loss_ignores_options_of_other_methods_and_rejects_typos():
    shared_block = {"residual": "gaussian", "flow_init": "default", "sigma_at_64": 3.0}
    assert build_loss("integral", stages=2, **shared_block).__class__.__name__ == "IntegralL1Loss"
    assert build_loss("heatmap_l2", stages=2, **shared_block).sigma_at_64 == 3.0
    mle = build_loss("mle", stages=2, **shared_block)
    assert len(mle.flows) == 2 and mle.residual == "gaussian"
    with pytest.raises(ValueError, match=r"\['residul'\].*flow_init"):
        build_loss("mle", stages=2, residul="laplace")


def test_model_spec_gives_model_and_loss_the_same_sigma_floor():
    spec = ModelSpec(
        method="mle", backbone="resnet18", stages=2, input_size=64, head_channels=8, loss={"sigma_eps": 0.05}
    )
    model, loss = spec.build_model(), spec.build_loss()
    assert loss.sigma_eps == 0.05
    with torch.no_grad():
        sigmas = model.eval()(torch.randn(1, 3, 64, 64)).sigmas
    assert sigmas.min() > 0.05
