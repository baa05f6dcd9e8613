"""Models from checkpoint files: warm start from another method's weights, loading old checkpoints."""

import pytest
import torch

from mle_hand_pipeline.training.checkpoint import ModelSpec, load_model, save_atomic, warm_start

SPEC = ModelSpec(method="mle", backbone="resnet18", stages=2, input_size=64, head_channels=16)


def test_warm_start_loads_shared_weights_and_keeps_new_heads(tmp_path):
    source = ModelSpec(**{**SPEC.__dict__, "method": "integral"}).build_model()
    save_atomic({"model": source.state_dict()}, tmp_path / "best.pt")
    torch.manual_seed(123)
    target = SPEC.build_model()
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    warm_start(target, tmp_path / "best.pt", log=False)
    loaded = target.state_dict()
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    variance = [k for k in loaded if k not in source.state_dict()]
    assert variance and all("variance" in k or k == "sigma_scale" for k in variance)
    assert all(torch.equal(loaded[k], fresh[k]) for k in variance)


def test_load_model_accepts_checkpoints_from_before_sigma_calibration_only(tmp_path, caplog):
    weights = SPEC.build_model().state_dict()
    del weights["sigma_scale"]
    save_atomic({"model": weights, "spec": SPEC.checkpoint_dict()}, tmp_path / "old.pt")
    model, _ = load_model(tmp_path / "old.pt")
    assert torch.equal(model.sigma_scale, torch.ones(2, 2)) and "predates sigma calibration" in caplog.text
    del weights["stages.0.variance_head.fc.0.weight"]
    save_atomic({"model": weights, "spec": SPEC.checkpoint_dict()}, tmp_path / "broken.pt")
    with pytest.raises(RuntimeError, match=r"broken\.pt does not fit.*variance_head"):
        load_model(tmp_path / "broken.pt")
