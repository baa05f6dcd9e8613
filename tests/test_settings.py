"""The project's configuration loads in every environment and builds valid training settings."""

from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from mle_hand_pipeline.settings import CONFIG_LOADER_ARGS
from mle_hand_pipeline.training.checkpoint import ModelSpec
from mle_hand_pipeline.training.engine import TrainConfig

CONF = Path(__file__).resolve().parents[1] / "conf"


def parameters(env: str) -> dict:
    loader = OmegaConfigLoader(str(CONF), **{**CONFIG_LOADER_ARGS, "default_run_env": env})
    return loader["parameters"]


@pytest.mark.parametrize("dataset", ["rhd", "freihand"])
def test_paper_environment_overrides_only_its_keys(dataset):
    base, paper = parameters("local")[dataset], parameters("paper")[dataset]
    spec, config = ModelSpec.from_params(paper["model"]), TrainConfig.from_params(paper["train"])
    assert (spec.backbone, spec.input_size, spec.stages, spec.head_channels) == ("resnet50", 256, 5, 256)
    assert (config.epochs, config.batch_size, config.lr_milestones) == (120, 128, (90,))
    assert config.sigma_warmup_epochs == 0 and config.augment.rotation == 180
    # The paper's own decoding and loss, whatever remedies the CPU demo turns on
    assert spec.decode_window == 0 and spec.loss["heatmap_prior"] == 0
    # Soft merge: keys the paper env does not name keep their base values.
    assert spec.method == base["model"]["method"] == "mle"
    assert spec.loss["sigma_eps"] == base["model"]["loss"]["sigma_eps"]
    assert config.grad_clip == base["train"]["grad_clip"]


@pytest.mark.parametrize("dataset", ["rhd", "freihand"])
def test_cpu_default_is_the_small_from_scratch_configuration(dataset):
    params = parameters("local")[dataset]
    spec, config = ModelSpec.from_params(params["model"]), TrainConfig.from_params(params["train"])
    assert not spec.pretrained and spec.input_size < 256
    assert 0 < config.sigma_warmup_epochs < config.epochs


def test_cpu_grid_0_2_0_environment_keeps_the_regime_its_documented_grid_was_measured_in():
    """Version 0.2.0's grid in docs/comparison.md ran that version's demo; its env must still run it."""
    base, grid = parameters("local"), parameters("cpu_grid_0.2.0")
    spec, config = ModelSpec.from_params(grid["rhd"]["model"]), TrainConfig.from_params(grid["rhd"]["train"])
    assert (spec.stages, config.epochs, config.lr_milestones, config.sigma_warmup_epochs) == (5, 12, (10,), 4)
    assert spec.decode_window == 0 and spec.loss["heatmap_prior"] == 0
    assert grid["synthetic_data"]["rhd"]["n_training"] == 1600
    # Everything else the grid's cells read is the demo's (soft merge).
    assert spec.backbone_stride == base["rhd"]["model"]["backbone_stride"]
    assert grid["rhd"]["preprocess"] == base["rhd"]["preprocess"]
    assert grid["synthetic_data"]["seed"] == base["synthetic_data"]["seed"]


def test_cpu_grid_environment_runs_the_current_demo_under_its_own_comparison_name():
    base, grid = parameters("local"), parameters("cpu_grid")
    assert grid["rhd"]["model"] == base["rhd"]["model"] and grid["rhd"]["train"] == base["rhd"]["train"]
    assert grid["synthetic_data"] == base["synthetic_data"]
    older = {parameters(env)["rhd"]["compare"]["name"] for env in ("cpu_grid_0.3.0", "cpu_grid_0.2.0")}
    assert grid["rhd"]["compare"]["name"] not in older and len(older) == 2


def test_cpu_grid_0_3_0_environment_keeps_the_paper_s_decoding_its_documented_grid_was_measured_with():
    base, grid = parameters("local")["rhd"], parameters("cpu_grid_0.3.0")["rhd"]
    assert grid["compare"]["name"] == "compare_rhd_cpu_0.3.0"
    assert grid["model"]["decode_window"] == 0 and grid["model"]["loss"]["heatmap_prior"] == 0
    # everything else is the current demo's (soft merge)
    unpinned = {k: v for k, v in grid["model"].items() if k not in ("decode_window", "loss")}
    assert unpinned == {k: v for k, v in base["model"].items() if k not in ("decode_window", "loss")}
    assert grid["train"] == base["train"]


def test_no_telemetry_leaves_the_machine_unless_the_user_opts_in(tmp_path):
    """Issue 37: Kedro's telemetry sent usage data on first use; MLflow's was on."""
    import os
    import subprocess
    import sys

    from helpers import PROJECT_ROOT
    from kedro_telemetry.plugin import _check_for_telemetry_consent

    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KEDRO_DISABLE_TELEMETRY", "DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY")
    }
    script = "import os, mle_hand_pipeline.settings; print(os.environ['MLFLOW_DISABLE_TELEMETRY'])"
    for preset, expected in ((None, "true"), ("false", "false")):
        env = clean if preset is None else {**clean, "MLFLOW_DISABLE_TELEMETRY": preset}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path
        )
        assert done.stdout.strip() == expected, done.stderr[-2000:]
    old = {k: os.environ.pop(k) for k in ("KEDRO_DISABLE_TELEMETRY", "DO_NOT_TRACK") if k in os.environ}
    try:
        assert _check_for_telemetry_consent(PROJECT_ROOT) is False  # the committed .telemetry file
    finally:
        os.environ.update(old)
