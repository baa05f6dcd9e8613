"""compare_rhd through `kedro run` on a tiny grid (2 methods x 2 seeds, 1 epoch, 2 cells at a time):
each cell is a real train_rhd run tagged in MLflow, the report is built from them, and after a cell's
run was lost only that cell is left to run."""

import shlex
import shutil

import pandas as pd
import pytest
from helpers import kedro_run, project_experiment

TINY = """
rhd:
  model: {backbone: resnet18, stages: 2, input_size: 64, head_channels: 16}
  train: {epochs: 1, batch_size: 8, lr_milestones: [1], num_workers: 0, eval_batch_size: 16}
  compare:
    methods: [mle, cpm]
    seeds: [0, 1]
    noise_levels: [{name: clean}]
    jobs: 2
"""
CELLS = ["mle-clean-scratch-s0", "cpm-clean-scratch-s0", "mle-clean-scratch-s1", "cpm-clean-scratch-s1"]


@pytest.mark.slow
def test_a_tiny_grid_runs_reports_and_resumes(kedro_project, preprocessed_rhd_data):
    (kedro_project / "conf/local/parameters_tiny.yml").write_text(TINY)
    shutil.copytree(preprocessed_rhd_data, kedro_project / "data")
    kedro_run(kedro_project, "--pipelines=compare_rhd", "--params=rhd.train.lr=0.002")

    report = kedro_project / "data/08_reporting/rhd/compare"
    cells = pd.read_csv(report / "cells.csv")
    assert cells["cell"].tolist() == CELLS and (cells["status"] == "finished").all()
    client, experiment = project_experiment(kedro_project)
    tagged = client.search_runs([experiment], "tags.comparison = 'compare_rhd'")
    runs = {r.data.tags["cell"]: r for r in tagged if "cell" in r.data.tags}
    assert sorted(runs) == sorted(CELLS)
    # Issue 39: the grid is one group in the UI: every cell and the report nested under one run that
    # carries the summary metrics and the report's files
    (group,) = [r for r in tagged if r.data.tags.get("comparison_role") == "group"]
    assert group.info.run_name == "comparison compare_rhd" and group.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in runs.values()} == {group.info.run_id}
    (reporting,) = [r for r in tagged if r.data.tags.get("comparison_role") == "report"]
    assert reporting.data.tags["mlflow.parentRunId"] == group.info.run_id
    assert reporting.info.run_name == "compare_rhd"  # the comparison pipeline's own run
    assert 0 <= group.data.metrics["mle.clean.scratch.test_pck_0.2_mean"] <= 1
    assert "cpm.clean.scratch.test_nme_ci_high" in group.data.metrics
    assert {a.path for a in client.list_artifacts(group.info.run_id, "comparison")} >= {
        "comparison/verdict.md",
        "comparison/summary.csv",
        "comparison/pck_by_method.png",
    }
    # Issue 18, row 13: no cell publishes rhd.model (predict's default model), each keeps only best.pt;
    # each cell's model is published in its own folder (catalog.yml, MLE_HAND_RUN_OUTPUTS)
    assert not (kedro_project / "data/06_models/rhd/model.pt").exists()
    for key in CELLS:
        (published,) = (report / f"compare_rhd/cells/{key}/06_models/rhd/model.pt").glob("*/model.pt")
        assert published.stat().st_nlink == 2  # a hard link to the run folder's best.pt
    folders = [f.parent for f in (kedro_project / "data/06_models/rhd").glob("*/*/run.json")]
    assert len(folders) == 4 and all(sorted(p.name for p in f.glob("*.pt")) == ["best.pt"] for f in folders)
    for key, run in runs.items():
        method, _, _, seed = key.split("-")
        assert run.info.status == "FINISHED" and run.info.run_name == f"rhd-{key}"
        # an ordinary train_rhd run with the cell's overrides and the parent's --params
        assert run.data.params["rhd.model.method"] == method and run.data.params["rhd.train.seed"] == seed[1:]
        assert (
            run.data.params["rhd.train.lr"] == "0.002"
            and run.data.params["rhd.evaluate.log_model"] == "False"
        )
        assert "test_nme" in run.data.metrics and "evaluation/test_qualitative.png" in {
            a.path for a in client.list_artifacts(run.info.run_id, "evaluation")
        }
        assert not [a for a in client.list_artifacts(run.info.run_id) if a.path == "model"]  # no export
    stages = pd.read_csv(report / "stages.csv")
    assert stages["method"].tolist() == ["mle", "cpm"] and (stages["stages"] == 2).all()
    assert (stages["n_seeds"] == 2).all() and stages["gain_pck_0.2_ci_low"].notna().all()
    summary = pd.read_csv(report / "summary.csv")
    assert summary["method"].tolist() == ["mle", "cpm"] and (summary["n_seeds"] == 2).all()
    assert summary["test_nme_ci_low"].notna().all()
    # the validation figures the cells were chosen on are summarised beside the test figures
    assert summary["best_val_nme_mean"].notna().all() and summary["best_val_pck_0.2_ci_low"].notna().all()
    # every cell logged its test crops' parts: each mean has an interval over seeds and test crops too
    assert summary["test_pck_0.2_crops_ci_low"].notna().all()
    inside = summary["test_pck_0.2_crops_ci_low"] <= summary["test_pck_0.2_mean"]
    assert (inside & (summary["test_pck_0.2_mean"] <= summary["test_pck_0.2_crops_ci_high"])).all()
    verdict = (report / "verdict.md").read_text()
    assert "4 of 4 planned cells" in verdict
    assert "## Intervals over seeds and test crops" in verdict and "Holm's correction" in verdict
    (parent,) = client.search_runs([experiment], "attributes.run_name = 'compare_rhd'")
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "comparison")} >= {
        "comparison/cells.csv",
        "comparison/verdict.md",
        "comparison/stages.csv",
        "comparison/pck_by_method.png",
        "comparison/pck_stages.png",
    }

    # a lost cell (its run killed): it alone is left to run (the grid's `_todo`, as in compare_rhd)
    client.set_terminated(runs["cpm-clean-scratch-s1"].info.run_id, "KILLED")
    output = kedro_run(kedro_project, "--pipelines=compare_commands_rhd", "--params=rhd.train.lr=0.002")
    (line,) = (report / "commands.txt").read_text().splitlines()
    argv = shlex.split(line)
    assert argv[0].startswith("MLE_HAND_RUN_OUTPUTS=data/08_reporting/rhd/compare/")  # the cell's own folder
    assert argv[1:4] == ["kedro", "run", "--pipelines=train_rhd"]
    assert argv[4].startswith("--params=rhd.train.lr=0.002,")  # the parent's --params, then the cell's
    assert "rhd.tracking.tags.cell=cpm-clean-scratch-s1," in line and line in output
    assert len(client.search_runs([experiment], "attributes.run_name = 'compare_commands_rhd'")) == 0
