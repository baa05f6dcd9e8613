"""Parameter blocks are checked up front, each problem named by its full parameter path."""

from pathlib import Path

import pytest
import torch
from helpers import TINY_MODEL_PARAMS, TINY_TRAIN_PARAMS
from kedro.config import OmegaConfigLoader

from mle_hand_pipeline.settings import CONFIG_LOADER_ARGS
from mle_hand_pipeline.training.validation import ParameterError, validate_model_params, validate_train_params

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.mark.parametrize("env", ["local", "paper"])
@pytest.mark.parametrize("dataset", ["rhd", "freihand"])
def test_the_shipped_blocks_are_valid(env, dataset, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    params = OmegaConfigLoader(str(CONF), **{**CONFIG_LOADER_ARGS, "default_run_env": env})["parameters"]
    validate_model_params(params[dataset]["model"], prefix=f"{dataset}.model")
    validate_train_params(params[dataset]["train"], prefix=f"{dataset}.train")
    validate_model_params({**TINY_MODEL_PARAMS, "method": "cpm"})
    validate_train_params(TINY_TRAIN_PARAMS)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "rhd.train.epochs must be an integer >= 1 (0 would train nothing), got 0"),
        ({"lr": 0}, "rhd.train.lr must be a positive number (the Adam learning rate), got 0"),
        ({"lr": -0.001}, "rhd.train.lr must be a positive number"),
        (
            {"lr": "1e-3"},
            "rhd.train.lr must be a positive number (the Adam learning rate), got '1e-3' (a string",
        ),
        ({"batch_size": 1}, "rhd.train.batch_size must be an integer >= 2, got 1"),
        ({"devices": 4}, "rhd.train.devices asks for 4 CUDA GPUs but 0 are available"),
        ({"devices": "gpu"}, "rhd.train.devices must be 'auto', 'cpu', 'cpu:N'"),
        ({"devices": "cpu:0"}, "rhd.train.devices must be 'cpu:N' with N >= 1"),
        ({"lr_milestones": [0]}, "rhd.train.lr_milestones must be a list of epochs"),
        ({"precision": "fp16"}, "rhd.train.precision must be one of auto, bf16, fp32"),
        ({"epoch": 3}, "rhd.train.epoch is not a parameter"),
        ({"augment": {"rotate": 1}}, "rhd.train.augment: unknown key(s) ['rotate']"),
        ({"label_noise": {"fraction": 2.0}}, "rhd.train.label_noise.fraction must be in [0, 1]"),
        ({"resume": ""}, "rhd.train.resume must be true, false or the run id"),
        ({"data_on_device": "maybe"}, "rhd.train.data_on_device must be auto, true or false, got 'maybe'"),
        ({"compile": "yes"}, "rhd.train.compile must be one of off, loss, all, got 'yes'"),
        ({"verify_crops": "sha"}, "rhd.train.verify_crops must be one of quick, full, got 'sha'"),
    ],
)
def test_train_block_errors_name_the_parameter(changes, message, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ParameterError) as error:
        validate_train_params({**TINY_TRAIN_PARAMS, **changes}, prefix="rhd.train")
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "foo"}, "rhd.model.method must be one of mle, heatmap_l2, integral, rle, cpm, got 'foo'"),
        ({"backbone": "vgg"}, "rhd.model.backbone must be one of resnet18"),
        ({"stages": 0}, "rhd.model.stages must be an integer >= 1"),
        ({"backbone_stride": 4}, "rhd.model.backbone_stride must be one of 32, 16, 8"),
        ({"input_size": 80}, "rhd.model.input_size must be a multiple of 32 for model.method=mle, got 80"),
        ({"input_size": 80, "method": "cpm"}, None),  # CPM's features are at S/8
        (
            {"input_size": 76, "method": "cpm"},
            "rhd.model.input_size must be a multiple of 8 for model.method=cpm",
        ),
        ({"init_checkpoint": "nowhere.pt"}, "rhd.model.init_checkpoint must be null or the path"),
        ({"loss": {"residul": "none"}}, "rhd.model.loss: unknown loss option(s) ['residul']"),
        ({"decode_window": -1}, "rhd.model.decode_window must be an integer >= 0"),
        ({"decode_window": 2}, None),
        ({"loss": {"heatmap_prior": -0.5}}, "rhd.model.loss: heatmap_prior must be >= 0"),
        ({"loss": {"heatmap_prior": 1.0}}, None),
    ],
)
def test_model_block_errors_name_the_parameter(changes, message):
    block = {**TINY_MODEL_PARAMS, "method": "mle", **changes}
    if message is None:
        validate_model_params(block, prefix="rhd.model")
        return
    with pytest.raises(ParameterError) as error:
        validate_model_params(block, prefix="rhd.model")
    assert message in str(error.value)


def test_all_problems_of_a_block_are_reported_together():
    with pytest.raises(ParameterError) as error:
        validate_train_params({**TINY_TRAIN_PARAMS, "epochs": 0, "lr": 0})
    assert error.value.problems[0].startswith("train.epochs") and error.value.problems[1].startswith(
        "train.lr"
    )


@pytest.mark.parametrize(
    "env",
    ["local", "paper", "cpu_grid", "cpu_grid_0.4.0", "cpu_grid_0.3.0", "cpu_grid_0.2.0", "cpu_grid_quick"],
)
def test_every_shipped_block_passes_the_parameter_hook(env, monkeypatch):
    """Every block the hook checks (hooks._BLOCK), in every shipped environment, is accepted."""
    from mle_hand_pipeline import hooks

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    params = OmegaConfigLoader(str(CONF), **{**CONFIG_LOADER_ARGS, "default_run_env": env})["parameters"]
    checked = []
    for namespace, blocks in params.items():
        for block, value in blocks.items() if isinstance(blocks, dict) else []:
            name = f"{namespace}.{block}"
            if block in hooks._VALIDATORS and isinstance(value, dict):  # predict.model is a path
                hooks._VALIDATORS[block](value, prefix=name)
                checked.append(name)
        if namespace in hooks._VALIDATORS:
            hooks._VALIDATORS[namespace](blocks, prefix=namespace)
            checked.append(namespace)
    assert {"rhd.evaluate", "rhd.compare", "rhd.preprocess", "predict", "pretrain_rhd.preprocess"} <= set(
        checked
    )


def test_unknown_parameter_blocks_name_the_key_the_close_match_and_the_known_names():
    from mle_hand_pipeline.training.validation import unknown_parameter_blocks

    configured = {"rhd": {"train": {"epochs": 8}, "model": {}}, "rhd_root": "x", "_anchor": {}, "predict": {}}
    assert unknown_parameter_blocks({"rhd": {"trian": {"epochs": 1}}}, configured) == [
        "rhd.trian.epochs: rhd has no 'trian' (did you mean rhd.train?); it has: model, train"
    ]
    (problem,) = unknown_parameter_blocks({"rhdd.train.epochs": 1}, configured)
    assert problem == (
        "rhdd.train.epochs: the configuration has no 'rhdd' (did you mean rhd?); "
        "it has: predict, rhd, rhd_root"
    )
    # Keys inside a block are the block validators' (they know optional keys the configuration omits).
    nested = {"rhd": {"train": {"label_noise": {"seed": 3}}}, "rhd_root": "y"}
    assert unknown_parameter_blocks(nested, configured) == []
