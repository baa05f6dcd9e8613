"""Each method's network and loss by name: errors, shared loss options, one sigma floor."""

import math
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


@pytest.mark.parametrize("name", METHODS)
def test_the_method_table_says_what_the_network_and_loss_have(name):
    """Issue 43: the engine read these from the model and the loss (``hasattr``); the table must agree."""
    from mle_hand_pipeline.methods import method_of
    from mle_hand_pipeline.training.pretrained import resnet_backbone

    method = method_of(name)
    size = 32 * method.input_multiple // math.gcd(32, method.input_multiple)
    model = build_model(name, "resnet18", stages=2, input_size=size, head_channels=8, backbone_stride=8)
    loss = build_loss(name, stages=2)
    assert method.has_sigmas == (getattr(model, "sigma_scale", None) is not None)
    assert method.has_sigmas == hasattr(loss, "error_rms")
    assert hasattr(model, "detach_sigma_input") or not method.has_sigmas  # the sigma warm-up's switch
    assert method.resnet_backbone == (resnet_backbone(model) is not None)
    with torch.no_grad():
        output = model.eval()(torch.randn(1, 3, size, size))
    assert output.coords.shape[-2:] == (21, 2) and (output.sigmas is not None) == method.has_sigmas
    if method.input_multiple > 1:
        with pytest.raises(ValueError, match=f"multiple of {method.input_multiple}"):
            from mle_hand_pipeline.training.validation import validate_model_params

            validate_model_params({"method": name, "input_size": size + 1})
