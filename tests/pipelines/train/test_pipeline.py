"""`train_rhd` end to end through `kedro run`, with MLflow on a temporary SQLite store."""

import json
import shutil

import mlflow
import numpy as np
import pytest
import torch
import yaml
from helpers import artifact_paths, kedro_run, preprocess_rhd, project_experiment

TINY = """
rhd:
  model: {backbone: resnet18, stages: 2, input_size: 64, head_channels: 16}
  train: {epochs: 2, batch_size: 8, lr_milestones: [1], num_workers: 0, eval_batch_size: 16,
          sigma_warmup_epochs: 1}
"""


@pytest.mark.slow
def test_train_rhd_tracks_everything_in_mlflow(kedro_project, tiny_rhd):
    (kedro_project / "conf/local/parameters_tiny.yml").write_text(TINY)
    # Without preprocessing outputs: a clear error naming the command to run.
    failed = kedro_run(kedro_project, "--pipelines=train_rhd", check=False)
    assert "run `kedro run --pipelines=rhd_preprocess` first" in " ".join(failed.split())

    preprocess_rhd(kedro_project, tiny_rhd["root"])
    kedro_run(kedro_project, "--pipelines=train_rhd")

    client, experiment_id = project_experiment(kedro_project)
    # Created by kedro-mlflow with conf/base/mlflow.yml's tags: a model-training experiment (issue 39).
    assert client.get_experiment(experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment_id], "attributes.run_name = 'train_rhd'")
    (run,) = runs  # the refused run was stopped before kedro-mlflow opened one
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["rhd.train.epochs"] == "2" and params["rhd.model.backbone"] == "resnet18"
    # Nested blocks are flattened; keys not overridden keep conf/base's values (soft merge).
    base = yaml.safe_load((kedro_project / "conf/base/parameters_train.yml").read_text())["_train_cpu"]
    assert params["rhd.train.sigma_warmup_epochs"] == "1" and params["rhd.evaluate.checkpoint"] == "best"
    assert params["rhd.train.augment.rotation"] == str(base["augment"]["rotation"])
    for key in (
        "train_loss",
        "loss_stage1",
        "loss_stage2",
        "lr",
        "val_nme",
        "val_pck_0.2",
        "images_per_s",
        "sigma_scale",
    ):
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == [1, 2], key
    for key in ("test_nme", "test_pck_0.2", "test_auc_0.2", "test_epe_px", "test_stage2_pck_0.2"):
        assert np.isfinite(run.data.metrics[key]), key
    # The validation figures of the evaluated (best) checkpoint: what a choice between runs reads.
    val_nme = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val_nme")}
    val_pck = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val_pck_0.2")}
    best_epoch = min(val_nme, key=val_nme.get)
    assert run.data.metrics["best_epoch"] == best_epoch
    assert run.data.metrics["best_val_nme"] == pytest.approx(val_nme[best_epoch])
    assert run.data.metrics["best_val_pck_0.2"] == pytest.approx(val_pck[best_epoch])
    artifacts = artifact_paths(client, run.info.run_id)
    for expected in (
        "preprocess/summary.json",
        "checkpoints/best.pt",
        "training/training_curves.png",
        "training/train_history.csv",
        "evaluation/test_metrics.json",
    ):
        assert expected in artifacts, artifacts
    report = json.loads((kedro_project / "data/07_model_output/rhd/training_report.json").read_text())
    assert report["epochs"] == 2
    assert report["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert run.data.tags["machine.cpu"] == report["machine"]["cpu"]

    mlflow.set_tracking_uri(f"sqlite:///{kedro_project / 'mlflow.db'}")
    model = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    out = model(torch.zeros(3, 3, 64, 64))
    assert out.shape == (3, 21, 4) and torch.isfinite(out).all()
    assert (out[..., 2:] > 0).all()  # sigmas of the MLE model are positive


@pytest.mark.slow
def test_train_rhd_on_a_damaged_crop_array_ends_with_one_line_naming_it(kedro_project, preprocessed_rhd_data):
    """Issue 18, rows 2 and 4: an emptied array ended as `Aborted!`, zeroed pixels trained to exit 0."""
    (kedro_project / "conf/local/parameters_tiny.yml").write_text(TINY)
    shutil.copytree(preprocessed_rhd_data, kedro_project / "data")
    array = kedro_project / "data/02_intermediate/rhd_crops/arrays/train.npy"
    intact = array.read_bytes()
    pixels_zeroed = intact[:128] + bytes(len(intact) - 128)  # 128: the .npy header of this array
    assert np.load(array).shape[1:] == (64, 64, 3) and np.lib.format.open_memmap(array).offset == 128
    for damaged, what in ((b"", "the file is empty (0 bytes)"), (pixels_zeroed, "its pixels changed")):
        array.write_bytes(damaged)
        output = kedro_run(kedro_project, "--pipelines=train_rhd", check=False)
        last = output.strip().splitlines()[-1]
        failed = "kedro run failed in node rhd.train_model: DamagedCropStoreError"
        assert last.startswith(f"{failed}: {array}: {what}"), last
        assert last.endswith("re-run kedro run --pipelines=rhd_preprocess"), last
        assert "Aborted!" not in output
    assert not (kedro_project / "data/06_models/rhd/mle").exists()  # no run folder was made


def test_a_misspelt_parameter_block_is_refused_before_any_run(kedro_project):
    """Issue 38: `--params=rhd.trian.epochs=1` ran the full 8-epoch default and exited 0."""
    output = kedro_run(kedro_project, "--pipelines=train_rhd", "--params=rhd.trian.epochs=1", check=False)
    assert "rhd.trian.epochs: rhd has no 'trian' (did you mean rhd.train?); it has: compare, " in output
    client, experiment_id = project_experiment(kedro_project)
    assert client.search_runs([experiment_id]) == []  # refused before kedro-mlflow opens a run
