"""The pipelines no other test runs through `kedro run` with the project's catalog, on one tiny project:
`__default__` (the quickstart: `synthetic_data` through its folder datasets, both preprocessings,
`train_rhd`), then `evaluate_rhd`, `train_freihand`, `evaluate_freihand`, `compare_freihand` and
`compare_report_freihand` on what it wrote; and a FreiHAND split without test crops refused before
training. Each checks what a user looks at: metrics files, MLflow runs with metrics and artifacts,
figures."""

import json
import re

import pandas as pd
import pytest
from helpers import artifact_paths, kedro_run, make_project, project_experiment

TINY = """
synthetic_data:
  workers: 1
  freihand: {n_unique: 10}        # 40 images of 224 px, 4 versions per sample
  rhd: {n_training: 12, n_evaluation: 4}
_tiny_model: &tiny_model {backbone: resnet18, stages: 2, input_size: 64, head_channels: 16}
_tiny_train: &tiny_train {epochs: 1, batch_size: 8, lr_milestones: [1], num_workers: 0,
                          eval_batch_size: 16, sigma_warmup_epochs: 1}
_tiny_preprocess: &tiny_preprocess {workers: 1, crop: {size: 64}}
rhd: {model: *tiny_model, train: *tiny_train, preprocess: *tiny_preprocess}
freihand:
  model: *tiny_model
  train: *tiny_train
  preprocess: *tiny_preprocess
  evaluate: {log_model: false}
  compare: {methods: [mle, cpm], seeds: [0], noise_levels: [{name: clean}], jobs: 2}
"""
FIGURES = ("pck_curve", "per_keypoint_nme", "per_stage_pck", "calibration", "qualitative")


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """A project after a tiny `kedro run` (the default pipeline): its path and that run's output."""
    project = make_project(tmp_path_factory.mktemp("quickstart"))
    (project / "conf/local/parameters_tiny.yml").write_text(TINY)
    return project, kedro_run(project)


def _only_run(client, experiment, name):
    (run,) = client.search_runs([experiment], f"attributes.run_name = '{name}'")
    assert run.info.status == "FINISHED", name
    return run


def _logged_models(client, run):
    found = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    return sorted(model.name for model in found)


def _test_metrics(run):
    return {k: v for k, v in run.data.metrics.items() if k.startswith("test_")}


@pytest.mark.slow
def test_the_quickstart_pipeline_then_evaluate_rhd(quickstart):
    project, _ = quickstart
    raw = project / "data/01_raw/synthetic"
    # synthetic_data through the catalog: the folders its FolderDatasets name, both layouts
    assert len(list((raw / "FreiHAND_pub_v2/training/rgb").glob("*.jpg"))) == 40
    assert len(list((raw / "RHD_published_v2/evaluation/color").glob("*.png"))) == 4
    summary = json.loads((project / "data/08_reporting/synthetic_data_summary.json").read_text())
    assert summary["freihand"]["n_images"] == 40 and summary["rhd"]["training"]["n_images"] == 12
    for dataset in ("rhd", "freihand"):  # both preprocessings read the synthetic folders
        kept = json.loads((project / f"data/08_reporting/{dataset}_preprocess_summary.json").read_text())
        assert kept["kept_total"] > 0 and (project / f"data/08_reporting/{dataset}_crops_grid.png").is_file()
    metrics = json.loads((project / "data/08_reporting/rhd/test_metrics.json").read_text())
    assert 0 <= metrics["pck_0.2"] <= 1
    reporting = project / "data/08_reporting/rhd"
    assert (reporting / "training_curves.png").stat().st_size > 5_000
    for figure in FIGURES:
        assert (reporting / f"test_{figure}.png").stat().st_size > 5_000, figure

    client, experiment = project_experiment(project)
    run = _only_run(client, experiment, "__default__")
    assert _test_metrics(run)["test_pck_0.2"] == pytest.approx(metrics["pck_0.2"])
    assert metrics["run"]["mlflow_run_id"] == run.info.run_id  # the file names the run it belongs to
    artifacts = artifact_paths(client, run.info.run_id)
    for expected in (
        "preprocess/summary.json",
        "checkpoints/best.pt",
        "training/training_curves.png",
        "evaluation/test_metrics.json",
        "evaluation/test_qualitative.png",
        "onnx/model.onnx",
    ):
        assert expected in artifacts, artifacts
    assert _logged_models(client, run) == ["model", "pyfunc_model"]

    # evaluate_rhd through the catalog, on the checkpoint the quickstart evaluated: the same metrics
    report = json.loads((project / "data/07_model_output/rhd/training_report.json").read_text())
    kedro_run(
        project,
        "--pipelines=evaluate_rhd",
        f"--params=rhd.evaluate.model={report['best_checkpoint']},rhd.tracking.tags.test_split=another",
    )
    evaluated = json.loads((project / "data/08_reporting/rhd/evaluate/test_metrics.json").read_text())
    assert evaluated["run"] == {
        "mlflow_run_id": evaluated["run"]["mlflow_run_id"],
        "model": report["best_checkpoint"],
    }
    evaluated.pop("run"), metrics.pop("run")
    assert evaluated == pytest.approx(metrics)
    for figure in FIGURES:
        assert (project / f"data/08_reporting/rhd/evaluate/{figure}.png").stat().st_size > 5_000, figure
    evaluation = _only_run(client, experiment, "evaluate_rhd")
    assert (
        evaluation.info.run_id
        == json.loads((project / "data/08_reporting/rhd/evaluate/test_metrics.json").read_text())["run"][
            "mlflow_run_id"
        ]
    )
    assert _test_metrics(evaluation) == pytest.approx(_test_metrics(run))
    assert "evaluation/qualitative.png" in artifact_paths(client, evaluation.info.run_id)
    assert evaluation.data.tags["test_split"] == "another"  # the tracking block tags evaluations too


@pytest.mark.slow
def test_train_and_evaluate_freihand(quickstart):
    project, _ = quickstart
    hands = pd.read_parquet(project / "data/03_primary/freihand_hands.parquet")
    assert set(hands["split"]) == {"train", "val", "test"}
    # the 4 versions of a sample stay in one split
    assert (hands.groupby("sample_id")["split"].nunique() == 1).all()
    kedro_run(project, "--pipelines=train_freihand")
    reporting = project / "data/08_reporting/freihand"
    metrics = json.loads((reporting / "test_metrics.json").read_text())
    predictions = pd.read_parquet(project / "data/07_model_output/freihand/test_predictions.parquet")
    assert len(predictions) == (hands["split"] == "test").sum()
    assert 0 <= metrics["pck_0.2"] <= 1 and metrics["mmpose_pck_0.2"] >= 0  # MMPose box: the 224-px image
    for figure in FIGURES:
        assert (reporting / f"test_{figure}.png").stat().st_size > 5_000, figure
    client, experiment = project_experiment(project)
    run = _only_run(client, experiment, "train_freihand")
    assert run.data.params["freihand.model.input_size"] == "64"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_nme")] == [1]
    assert _test_metrics(run)["test_nme"] == pytest.approx(metrics["nme"])
    artifacts = artifact_paths(client, run.info.run_id)
    for expected in (
        "checkpoints/best.pt",
        "training/training_curves.png",
        "evaluation/test_qualitative.png",
    ):
        assert expected in artifacts, artifacts
    assert _logged_models(client, run) == []  # freihand.evaluate.log_model: false

    # evaluate_freihand on the model train_freihand published (the versioned catalog entry's file)
    (model,) = (project / "data/06_models/freihand/model.pt").glob("*/model.pt")
    kedro_run(project, "--pipelines=evaluate_freihand", f"--params=freihand.evaluate.model={model}")
    evaluated = json.loads((reporting / "evaluate/test_metrics.json").read_text())
    assert evaluated["run"] == {
        "mlflow_run_id": evaluated["run"]["mlflow_run_id"],
        "model": str(model),
    }
    evaluated.pop("run"), metrics.pop("run")
    assert evaluated == pytest.approx(metrics)
    assert _test_metrics(_only_run(client, experiment, "evaluate_freihand")) == pytest.approx(
        _test_metrics(run)
    )


@pytest.mark.slow
def test_compare_freihand_its_report_and_commands(quickstart):
    project, _ = quickstart
    kedro_run(project, "--pipelines=compare_freihand")
    report = project / "data/08_reporting/freihand/compare"
    cells = pd.read_csv(report / "cells.csv")
    assert cells["cell"].tolist() == ["mle-clean-scratch-s0", "cpm-clean-scratch-s0"]
    assert (cells["status"] == "finished").all()
    client, experiment = project_experiment(project)
    runs = {
        r.data.tags["cell"]: r
        for r in client.search_runs([experiment], "tags.comparison = 'compare_freihand'")
        if "cell" in r.data.tags  # not the comparison's group and report runs
    }
    assert sorted(runs) == ["cpm-clean-scratch-s0", "mle-clean-scratch-s0"]
    for key, run in runs.items():  # each cell: an ordinary train_freihand run
        assert run.info.status == "FINISHED" and run.info.run_name == f"freihand-{key}"
        assert run.data.params["freihand.model.method"] == key.split("-")[0]
        assert "test_nme" in run.data.metrics
    assert "2 of 2 planned cells" in (report / "verdict.md").read_text()

    # the report rebuilt from MLflow alone: the same tables, in its own MLflow run
    first = {p.name: p.read_bytes() for p in report.glob("*.csv")}
    (report / "summary.csv").unlink()
    kedro_run(project, "--pipelines=compare_report_freihand")
    assert {p.name: p.read_bytes() for p in report.glob("*.csv")} == first
    rebuilt = _only_run(client, experiment, "compare_report_freihand")
    assert "comparison/verdict.md" in artifact_paths(client, rebuilt.info.run_id)

    # a lost cell: the one command left to run, for another scheduler
    client.set_terminated(runs["cpm-clean-scratch-s0"].info.run_id, "KILLED")
    kedro_run(project, "--pipelines=compare_commands_freihand")
    (line,) = (report / "commands.txt").read_text().splitlines()
    assert line.startswith("MLE_HAND_RUN_OUTPUTS=data/08_reporting/freihand/compare/")
    assert " kedro run --pipelines=train_freihand " in line
    assert "freihand.tracking.tags.cell=cpm-clean-scratch-s0" in line


@pytest.mark.slow
def test_the_step_commands_refuse_a_split_without_test_crops_before_training(tmp_path):
    # The README's step commands: synthetic data, then FreiHAND preprocessing from its default root,
    # here with split ratios that leave no test crops; train_freihand must refuse before training.
    project = make_project(tmp_path)
    (project / "conf/local/parameters_tiny.yml").write_text(TINY)
    kedro_run(project, "--pipelines=synthetic_data")
    assert (project / "data/01_raw/synthetic/RHD_published_v2/training/anno_training.pickle").is_file()
    kedro_run(project, "--pipelines=freihand_preprocess", "--params=freihand.preprocess.split_ratios.test=0")
    output = kedro_run(project, "--pipelines=train_freihand", check=False)
    message = " ".join(output.split())
    assert re.search(
        r"kedro run failed in node freihand.train_model: ValueError: the freihand hand table has no 'test' "
        r"crops, which this run needs: 40 crops of 10 samples \(per split: train 36, val 4\)",
        message,
    ), output[-3000:]
    assert not (project / "data/06_models/freihand").exists() or not list(
        (project / "data/06_models/freihand").rglob("*.pt")
    )
    client, experiment = project_experiment(project)
    (run,) = client.search_runs([experiment], "attributes.run_name = 'train_freihand'")
    assert run.info.status == "FAILED" and "train_loss" not in run.data.metrics
    assert not (project / ".viz").exists()  # kedro-viz's run hooks are off (settings.py)
