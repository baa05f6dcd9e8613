"""`pretrain_rhd`: a separate rendered set, checked against the evaluation data's held-out images,
trained once, saved as a weights-only backbone checkpoint and an MLflow run."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import artifact_paths, kedro_run, project_experiment

from mle_hand_pipeline.pipelines.pretrain.nodes import check_no_held_out_images, render_pretrain_set
from mle_hand_pipeline.training.checkpoint import ModelSpec, warm_start

TINY = """
rhd_root: {root}
rhd:
  preprocess: {{workers: 1, crop: {{size: 64}}}}
pretrain_rhd:
  workers: 1
  render: {{n_training: 16}}
  preprocess: {{val_ratio: 0.25}}
  model: {{head_channels: 16}}
  train: {{epochs: 1, batch_size: 8, lr_milestones: [1], num_workers: 0, eval_batch_size: 16}}
"""


def test_the_evaluation_seed_is_refused_before_rendering(tmp_path):
    with pytest.raises(ValueError, match=r"equals synthetic_data\.seed"):
        render_pretrain_set({"root": str(tmp_path / "never")}, seed=5, workers=1, evaluation_seed=5)
    assert not (tmp_path / "never").exists()


def test_a_pretraining_set_sharing_held_out_images_is_refused(tiny_rhd):
    # the evaluation data itself posing as the pretraining set: every val/test image is shared
    summary = {"root": str(tiny_rhd["root"]), "seed": 7}
    with pytest.raises(ValueError, match="same pixels as validation/test images"):
        check_no_held_out_images(summary, tiny_rhd["hands"], str(tiny_rhd["root"]))


@pytest.mark.slow
def test_pretrain_rhd_writes_a_backbone_checkpoint_and_an_mlflow_run(kedro_project, tiny_rhd):
    (kedro_project / "conf/local/parameters_tiny.yml").write_text(TINY.format(root=tiny_rhd["root"]))
    hands_file = kedro_project / "data/03_primary/rhd_hands.parquet"
    hands_file.parent.mkdir(parents=True)
    tiny_rhd["hands"].to_parquet(hands_file)  # the evaluation data, as rhd_preprocess writes it

    kedro_run(kedro_project, "--pipelines=pretrain_rhd")

    # its own raw folder, rendered with its own seed
    summary = json.loads((kedro_project / "data/01_raw/synthetic_pretrain/rhd_summary.json").read_text())
    assert summary["root"] == "data/01_raw/synthetic_pretrain/RHD_published_v2"
    assert summary["training"]["n_images"] == 16 and summary["seed"] != 7
    check = json.loads((kedro_project / "data/08_reporting/pretrain_rhd/held_out_check.json").read_text())
    assert check["n_shared"] == 0 and check["n_pretrain_images"] == 16 and check["n_held_out_images"] > 0

    path = kedro_project / "data/06_models/rhd/pretrained_backbone.pt"
    state = torch.load(path, weights_only=True)
    assert state["backbone"] == "resnet18" and state["info"]["method"] == "integral"
    target = ModelSpec(
        method="mle", backbone="resnet18", stages=2, input_size=64, head_channels=16, backbone_stride=8
    )
    model = target.build_model()
    warm_start(model, path, log=False)
    torch.testing.assert_close(model.backbone.state_dict(), state["weights"], rtol=0, atol=0)

    client, experiment_id = project_experiment(kedro_project)
    (run,) = client.search_runs([experiment_id], "attributes.run_name = 'pretrain_rhd'")
    assert run.info.status == "FINISHED" and state["info"]["mlflow_run_id"] == run.info.run_id
    assert run.data.params["pretrain_rhd.model.method"] == "integral"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_nme")] == [1]
    # the machine it trained on, as for every training run (CPU results are per kind of machine)
    assert run.data.tags["machine.cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert run.data.tags["machine.torch"] == torch.__version__.split("+")[0]
    artifacts = artifact_paths(client, run.info.run_id)
    for expected in (
        "pretrain/held_out_check.json",
        "preprocess/preprocess_summary.json",
        "preprocess/pretrain_rhd_crops_grid.png",  # the preprocessing template's visual check
        "checkpoints/best.pt",
    ):
        assert expected in artifacts, artifacts
