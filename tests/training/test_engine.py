"""Training loop: learning, exact resume after a kill, DDP replicas, non-finite handling."""

import multiprocessing
from dataclasses import replace

import pytest
import torch
from helpers import KillAfterFirstEpoch, fit_in_child

from mle_hand_pipeline.models import InferenceWrapper
from mle_hand_pipeline.training.augment import AugmentSettings
from mle_hand_pipeline.training.checkpoint import ModelSpec, load_checkpoint, load_model
from mle_hand_pipeline.training.engine import NonFiniteLossError, TrainConfig, fit

SPEC = ModelSpec(method="mle", backbone="resnet18", stages=2, input_size=64, head_channels=16)


def _config(**overrides) -> TrainConfig:
    values = {
        "epochs": 2,
        "batch_size": 8,
        "lr": 1e-3,
        "lr_milestones": (1,),
        "seed": 3,
        "devices": "cpu",
        "num_workers": 0,
        "eval_batch_size": 16,
        "augment": AugmentSettings(),
    }
    return TrainConfig(**{**values, **overrides})


def _splits(tiny_rhd):
    hands = tiny_rhd["hands"]
    return hands[hands["split"] == "train"].reset_index(drop=True), hands[
        hands["split"] == "val"
    ].reset_index(drop=True)


def test_resume_after_kill_matches_uninterrupted_run(tiny_rhd, tmp_path):
    train, val = _splits(tiny_rhd)
    # The sigma warm-up ends at the resume point: the resumed run must switch it off by itself.
    config = _config(sigma_warmup_epochs=1)
    reference = fit(SPEC, config, train, val, tiny_rhd["crops"], tmp_path / "reference")

    context = multiprocessing.get_context("spawn")
    child = context.Process(
        target=fit_in_child,
        args=((SPEC, config, train, val, tiny_rhd["crops"], tmp_path / "killed", KillAfterFirstEpoch()),),
    )
    child.start()
    child.join()
    assert child.exitcode == 3
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["epoch"] == 1

    resumed = fit(SPEC, replace(config, resume=True), train, val, tiny_rhd["crops"], tmp_path / "killed")
    expected = load_checkpoint(reference.last_checkpoint)
    actual = load_checkpoint(resumed.last_checkpoint)
    assert actual["epoch"] == expected["epoch"] == 2
    for key, tensor in expected["module"].items():
        torch.testing.assert_close(actual["module"][key], tensor, rtol=0, atol=0, msg=key)
    assert resumed.history.equals(reference.history.assign(images_per_s=resumed.history["images_per_s"]))


def test_sigma_warmup_detaches_for_its_epochs_only(tiny_rhd, tmp_path):
    train, val = _splits(tiny_rhd)
    runs = {
        warmup: fit(
            SPEC, _config(sigma_warmup_epochs=warmup), train, val, tiny_rhd["crops"], tmp_path / str(warmup)
        )
        for warmup in (0, 1, 2)
    }
    first_epoch = {w: r.history.iloc[0][["train_loss", "val_nme"]].tolist() for w, r in runs.items()}
    weights = {w: load_checkpoint(r.last_checkpoint)["module"] for w, r in runs.items()}
    backbone_key = "model.backbone.body.conv1.weight"
    assert first_epoch[1] == first_epoch[2] != first_epoch[0]  # detached in epoch 1 iff warmup >= 1
    assert not torch.equal(weights[1][backbone_key], weights[2][backbone_key])  # epoch 2 differs


def test_two_process_gloo_ddp_replicas_identical(tiny_rhd, tmp_path):
    train, val = _splits(tiny_rhd)
    result = fit(SPEC, _config(devices="cpu:2", epochs=1), train, val, tiny_rhd["crops"], tmp_path)
    last = load_checkpoint(result.last_checkpoint)
    assert last["replica_max_abs_diff"] == 0.0
    assert len(result.history) == 1 and result.history["train_loss"].notna().all()


def test_non_finite_losses_stop_with_a_clear_error(tiny_rhd, tmp_path):
    train, val = _splits(tiny_rhd)
    with pytest.raises(NonFiniteLossError, match="3 training steps in a row had a non-finite loss"):
        fit(SPEC, _config(lr=float("inf"), max_nonfinite_steps=3), train, val, tiny_rhd["crops"], tmp_path)


def test_resume_refuses_a_different_model(tiny_rhd, tmp_path):
    train, val = _splits(tiny_rhd)
    fit(SPEC, _config(epochs=1), train, val, tiny_rhd["crops"], tmp_path)
    other = ModelSpec(**{**SPEC.__dict__, "stages": 3})
    with pytest.raises(ValueError, match="was trained with model"):
        fit(other, _config(resume=True), train, val, tiny_rhd["crops"], tmp_path)


def test_checkpoints_carry_the_flows_rms_and_inference_applies_it(tiny_rhd, tmp_path):
    train, val = _splits(tiny_rhd)
    result = fit(SPEC, _config(epochs=1), train, val, tiny_rhd["crops"], tmp_path)
    saved = load_checkpoint(result.last_checkpoint)["module"]
    loss = SPEC.build_loss()
    loss.load_state_dict({k.removeprefix("loss."): v for k, v in saved.items() if k.startswith("loss.")})
    scale = saved["model.sigma_scale"]
    torch.testing.assert_close(scale, loss.error_rms(), rtol=0, atol=0)
    assert not torch.equal(scale, torch.ones(2, 2))  # the trained flows moved away from N(0, I)
    assert result.history["sigma_scale"].iloc[-1] == pytest.approx(float(scale[-1].mean()))

    model, _ = load_model(result.best_checkpoint)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        raw = model(images).sigmas[:, -1]
        _, sigmas_px = InferenceWrapper(model)(images)
    torch.testing.assert_close(sigmas_px, raw * scale[-1] * 64)
