"""Training loop: learning, exact resume after a kill, DDP replicas, non-finite handling."""

import copy
import multiprocessing
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import KillAfterFirstEpoch, fit_in_child

from mle_hand_pipeline.models import InferenceWrapper
from mle_hand_pipeline.training import engine
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("skip_on_device", [False, True], ids=["host-skip", "device-skip"])
def test_non_finite_losses_stop_with_a_clear_error(tiny_rhd, tmp_path, monkeypatch, skip_on_device):
    # device-skip is the CUDA path (fused Adam told to skip by a device flag), run here on the CPU.
    monkeypatch.setattr(engine, "skips_steps_on_device", lambda device: skip_on_device)
    train, val = _splits(tiny_rhd)
    with pytest.raises(NonFiniteLossError, match="3 training steps in a row had a non-finite loss"):
        config = _config(max_nonfinite_steps=3)
        # The parameter block refuses a non-finite lr; here it stands for a loss that diverges anyway.
        object.__setattr__(config, "lr", float("inf"))
        fit(SPEC, config, train, val, tiny_rhd["crops"], tmp_path)


@pytest.mark.parametrize("skip_on_device", [False, True], ids=["host-skip", "device-skip"])
def test_a_non_finite_step_changes_nothing_and_a_finite_one_applies(tiny_rhd, monkeypatch, skip_on_device):
    monkeypatch.setattr(engine, "skips_steps_on_device", lambda device: skip_on_device)
    train, val = _splits(tiny_rhd)
    trainer = engine.Trainer(
        0, 1, torch.device("cpu"), SPEC, _config(), train, val, tiny_rhd["crops"], Path("unused"), None
    )
    assert (trainer.optimizer.param_groups[0]["fused"] is True) == skip_on_device
    parameters = list(trainer.module.parameters())

    def loss(scale: float) -> torch.Tensor:
        return sum((p * p).sum() for p in parameters) * scale

    assert bool(trainer._backward_and_step(loss(1.0)))
    weights = [p.detach().clone() for p in parameters]
    state = copy.deepcopy(trainer.optimizer.state_dict()["state"])
    for bad in (float("nan"), float("inf")):
        assert not bool(trainer._backward_and_step(loss(bad)))
    assert all(torch.equal(p, w) for p, w in zip(parameters, weights, strict=True))
    after = trainer.optimizer.state_dict()["state"]
    for key, value in state.items():
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(after[key][name], value[name]), (key, name)
    assert bool(trainer._backward_and_step(loss(1.0)))
    assert not torch.equal(parameters[0], weights[0])


@pytest.mark.slow
def test_resume_refuses_a_different_model(tiny_rhd, tmp_path):
    train, val = _splits(tiny_rhd)
    fit(SPEC, _config(epochs=1), train, val, tiny_rhd["crops"], tmp_path)
    other = ModelSpec(**{**SPEC.__dict__, "stages": 3})
    with pytest.raises(ValueError, match="was trained with model"):
        fit(other, _config(resume=True), train, val, tiny_rhd["crops"], tmp_path)


@pytest.mark.slow
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


@pytest.mark.slow
def test_compiled_training_matches_eager_and_reports_compile_time(tiny_rhd, tmp_path, monkeypatch):
    # Inductor takes minutes on this CPU: the eager backend runs the same graph capture (Dynamo), so this
    # checks the wiring (in-place compile, unchanged checkpoint keys, compile time apart from speed).
    compile_in_place = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self: compile_in_place(self, backend="eager"))
    train, val = _splits(tiny_rhd)
    eager = fit(SPEC, _config(epochs=1), train, val, tiny_rhd["crops"], tmp_path / "eager")
    # "loss" and "all" differ only in which module compile() is called on; "loss" traces in seconds.
    compiled = fit(SPEC, _config(epochs=1, compile="loss"), train, val, tiny_rhd["crops"], tmp_path / "loss")
    assert compiled.history["compile_time_s"].iloc[0] > 0 and "compile_time_s" not in eager.history
    torch.testing.assert_close(
        compiled.history["train_loss"].iloc[0], eager.history["train_loss"].iloc[0], rtol=1e-5, atol=0
    )
    assert (
        load_checkpoint(compiled.last_checkpoint)["module"].keys()
        == load_checkpoint(eager.last_checkpoint)["module"].keys()
    )


def test_train_compile_must_be_a_known_mode():
    assert _config(compile=False).compile == "off" and _config(compile=True).compile == "all"
    with pytest.raises(ValueError, match=r"train\.compile must be one of off, loss, all, got 'max'"):
        TrainConfig.from_params({"compile": "max"})


def test_check_resumable_names_the_checkpoint_of_another_model(tmp_path):
    from mle_hand_pipeline.training.checkpoint import check_resumable

    torch.save({"spec": SPEC.checkpoint_dict()}, tmp_path / "last.pt")
    check_resumable(tmp_path, SPEC)
    check_resumable(tmp_path / "no_run_yet", SPEC)  # nothing to compare: the run starts fresh
    other = ModelSpec(**{**SPEC.__dict__, "stages": 3})
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'last.pt'} was trained with model .*stages"):
        check_resumable(tmp_path, other)
