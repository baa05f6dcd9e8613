"""Decisions that only run on a GPU in production, checked on the CPU: device and precision choice
(``torch.cuda`` patched), whether the crops fit on the device (``mem_get_info`` patched), channels_last
and ``compile="all"`` numerics, resuming a fused-Adam checkpoint without it, and bf16 autocast in
training and in ``predict_crops`` (CPU autocast supports bf16)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mle_hand_pipeline.training import engine
from mle_hand_pipeline.training.augment import AugmentSettings, prepare_batch
from mle_hand_pipeline.training.checkpoint import ModelSpec, load_checkpoint, load_model
from mle_hand_pipeline.training.data import HandCrops, fits_on_device
from mle_hand_pipeline.training.engine import TrainConfig, fit, resolve_devices, resolve_precision
from mle_hand_pipeline.training.inference import predict_crops

SPEC = ModelSpec(method="mle", backbone="resnet18", stages=2, input_size=64, head_channels=16)
CONFIG = TrainConfig(
    epochs=1,
    batch_size=8,
    lr_milestones=(1,),
    seed=3,
    devices="cpu",
    num_workers=0,
    eval_batch_size=16,
    augment=AugmentSettings(),
)


def _gpus(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def _splits(tiny_rhd):
    hands = tiny_rhd["hands"]
    return tuple(hands[hands["split"] == s].reset_index(drop=True) for s in ("train", "val"))


@pytest.mark.parametrize(
    ("gpus", "devices", "expected"),
    [
        (0, "auto", ("cpu", 1)),
        (4, "auto", ("cuda", 4)),
        (4, "cpu", ("cpu", 1)),
        (4, "cpu:3", ("cpu", 3)),
        (0, "cpu:2", ("cpu", 2)),
        (4, 2, ("cuda", 2)),
        (4, 4, ("cuda", 4)),
    ],
)
def test_resolve_devices(monkeypatch, gpus, devices, expected):
    _gpus(monkeypatch, gpus)
    assert resolve_devices(devices) == expected


@pytest.mark.parametrize(
    ("gpus", "devices", "message"),
    [
        (0, 1, "train.devices=1 but 0 CUDA devices (cpu:1: CPU processes)"),
        (4, 5, "train.devices=5 but 4 CUDA devices (cpu:5: CPU processes)"),
        (4, 0, "train.devices must be 'auto', 'cpu', 'cpu:N' or a positive int, got 0"),
        (4, "gpu", "train.devices must be 'auto', 'cpu', 'cpu:N' or a positive int, got 'gpu'"),
    ],
)
def test_resolve_devices_refuses(monkeypatch, gpus, devices, message):
    _gpus(monkeypatch, gpus)
    with pytest.raises(ValueError) as error:
        resolve_devices(devices)
    assert str(error.value) == message


def test_resolve_precision():
    assert resolve_precision("auto", "cuda") == "bf16" and resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16" and resolve_precision("fp32", "cuda") == "fp32"
    with pytest.raises(ValueError, match=r"train.precision must be 'auto', 'bf16' or 'fp32', got 'fp16'"):
        resolve_precision("fp16", "cuda")


def test_fits_on_device_is_a_quarter_of_the_free_memory(monkeypatch):
    dataset = type("Crops", (), {"__len__": lambda self: 100, "crop_size": 64})()
    size = 100 * 64 * 64 * 3
    asked = []

    def mem_get_info(device):
        asked.append(device)
        return free, 80 * 2**30

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    cuda = torch.device("cuda", 1)
    free = 4 * size + 1
    assert fits_on_device(dataset, cuda) and asked == [cuda]
    free = 4 * size
    assert not fits_on_device(dataset, cuda)  # strictly under a quarter
    assert fits_on_device(dataset, cuda, share=0.5)
    asked.clear()
    assert not fits_on_device(dataset, torch.device("cpu")) and asked == []  # never asks on the CPU


def test_channels_last_gives_the_loss_and_gradients_of_contiguous_memory(tiny_rhd):
    # The CUDA path moves the module and each batch to channels_last; the numbers must not change.
    train, _ = _splits(tiny_rhd)
    batch = next(iter(torch.utils.data.DataLoader(HandCrops(train, tiny_rhd["crops"]), batch_size=4)))
    images, target, visible = prepare_batch(batch, 64, torch.device("cpu"), None, None)
    results = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        module = engine.TrainingModule(SPEC.build_model(), SPEC.build_loss())
        x = images
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
            x = images.contiguous(memory_format=torch.channels_last)
            assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        loss = module(x, target, visible).total
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in module.parameters() if p.grad is not None]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_compile_all_trains_like_eager(tiny_rhd, tmp_path, monkeypatch):
    # compile="all" compiles network and loss in place; the eager backend runs dynamo's graph capture
    # without code generation, so the CPU checks the wiring in seconds.
    compile_in_place = torch.nn.Module.compile
    compiled_modules = []

    def eager_compile(self):
        compiled_modules.append(type(self).__name__)
        compile_in_place(self, backend="eager")

    monkeypatch.setattr(torch.nn.Module, "compile", eager_compile)
    train, val = _splits(tiny_rhd)
    eager = fit(SPEC, CONFIG, train, val, tiny_rhd["crops"], tmp_path / "eager")
    compiled = fit(SPEC, replace(CONFIG, compile="all"), train, val, tiny_rhd["crops"], tmp_path / "all")
    assert compiled_modules == ["TrainingModule"]
    assert compiled.history["compile_time_s"].iloc[0] > 0
    np.testing.assert_allclose(compiled.history["train_loss"], eager.history["train_loss"], rtol=1e-4)
    assert (
        load_checkpoint(compiled.last_checkpoint)["module"].keys()
        == load_checkpoint(eager.last_checkpoint)["module"].keys()
    )


@pytest.mark.slow
def test_a_fused_adam_checkpoint_resumes_on_a_run_without_it(tiny_rhd, tmp_path, monkeypatch):
    # Written on a GPU (fused Adam, the device-skip path), continued on the CPU (plain Adam).
    train, val = _splits(tiny_rhd)
    monkeypatch.setattr(engine, "skips_steps_on_device", lambda device: True)
    fit(SPEC, replace(CONFIG, epochs=1), train, val, tiny_rhd["crops"], tmp_path)
    state = load_checkpoint(tmp_path / "last.pt")
    assert all(group["fused"] for group in state["optimizer"]["param_groups"])
    monkeypatch.setattr(engine, "skips_steps_on_device", lambda device: False)
    trainer = engine.Trainer(
        0, 1, torch.device("cpu"), SPEC, replace(CONFIG, epochs=2, resume=True), train, val,
        tiny_rhd["crops"], tmp_path, None,
    )  # fmt: skip
    assert trainer.start_epoch == 1 and not trainer.optimizer.param_groups[0]["fused"]
    assert trainer.optimizer.state_dict()["state"]  # Adam's moments came along
    resumed = fit(SPEC, replace(CONFIG, epochs=2, resume=True), train, val, tiny_rhd["crops"], tmp_path)
    assert resumed.history["epoch"].tolist() == [1, 2] and np.isfinite(resumed.history["train_loss"]).all()


@pytest.mark.slow
def test_bf16_autocast_training_and_prediction_on_the_cpu(tiny_rhd, tmp_path, monkeypatch):
    casts = []
    original = engine.autocast_context

    def recording(device, precision):
        casts.append(precision)
        return original(device, precision)

    monkeypatch.setattr(engine, "autocast_context", recording)
    train, val = _splits(tiny_rhd)
    result = fit(SPEC, replace(CONFIG, precision="bf16"), train, val, tiny_rhd["crops"], tmp_path)
    assert set(casts) == {"bf16"} and np.isfinite(result.history["train_loss"]).all()

    model, spec = load_model(result.best_checkpoint)
    crops = HandCrops(val, tiny_rhd["crops"])
    fp32 = predict_crops(model, crops, spec.input_size, torch.device("cpu"), "fp32", progress=False)
    bf16 = predict_crops(model, crops, spec.input_size, torch.device("cpu"), "bf16", progress=False)
    assert fp32.coords.dtype == bf16.coords.dtype == np.float64
    difference = np.abs(bf16.coords - fp32.coords)
    assert difference.max() < 0.05 * crops.crop_size  # bf16 keeps 8 bits of mantissa: near, not equal
    assert difference.max() > 0  # the bf16 path did run in bf16
    assert np.isfinite(bf16.sigmas).all() and (bf16.sigmas > 0).all()
