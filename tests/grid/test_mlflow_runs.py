"""Finding a comparison's runs in MLflow, and which cells are done (fake runs, temporary SQLite store)."""

import time

import pandas as pd
import pytest
from helpers import log_fake_cell_run
from mlflow.tracking import MlflowClient

from mle_hand_pipeline.grid.cells import Cell
from mle_hand_pipeline.grid.mlflow_runs import (
    StaleComparisonError,
    comparison_runs,
    finished_cells,
    latest_per_cell,
    per_crop_tables,
    unfinished_runs,
)


def cell(method, seed, config="cfg1"):
    return Cell(method, "clean", "scratch", seed, {}, config)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store for the module (creating an MLflow SQLite database takes seconds); each test uses
    its own comparison names."""
    tmp_path = tmp_path_factory.mktemp("mlflow")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "mlruns").as_uri())
    return client, experiment


def test_finished_cells_are_skipped_and_others_rerun(store):
    client, experiment = store
    done = log_fake_cell_run(client, experiment, "study", cell("mle", 0), {"test_nme": 0.3})
    log_fake_cell_run(client, experiment, "study", cell("cpm", 0), {"test_nme": 0.2}, status="FAILED")
    log_fake_cell_run(client, experiment, "study", cell("cpm", 0), {"test_nme": 0.2}, status="KILLED")
    log_fake_cell_run(client, experiment, "other_study", cell("cpm", 1), {"test_nme": 0.2})
    plan = [cell("mle", 0), cell("cpm", 0), cell("cpm", 1)]

    runs = comparison_runs(client, "study")
    assert runs["run_id"].tolist() == [done] and runs.loc[0, "test_nme"] == 0.3
    assert runs.loc[0, "seed"] == 0 and runs.loc[0, "cell"] == "mle-clean-scratch-s0"
    assert finished_cells(runs, plan) == {"mle-clean-scratch-s0": done}
    assert len(comparison_runs(client, "study", status=None)) == 3
    assert comparison_runs(client, "nothing").empty


def test_a_finished_cell_with_other_settings_stops_the_comparison(store):
    client, experiment = store
    log_fake_cell_run(client, experiment, "study2", cell("mle", 0, config="old"), {"test_nme": 0.3})
    with pytest.raises(
        StaleComparisonError, match=r"mle-clean-scratch-s0 \(settings old, now new\).*compare.name"
    ):
        finished_cells(comparison_runs(client, "study2"), [cell("mle", 0, config="new")])


def test_a_cell_run_twice_counts_once_the_newest(store):
    client, experiment = store
    log_fake_cell_run(client, experiment, "study3", cell("mle", 0), {"test_nme": 0.3})
    newest = log_fake_cell_run(client, experiment, "study3", cell("mle", 0), {"test_nme": 0.25})
    latest = latest_per_cell(comparison_runs(client, "study3"))
    assert latest["run_id"].tolist() == [newest]


def test_each_run_names_the_machine_it_trained_on(store):
    client, experiment = store
    cpu = log_fake_cell_run(client, experiment, "study4", cell("mle", 0), {"test_nme": 0.3})
    gpu = log_fake_cell_run(client, experiment, "study4", cell("mle", 1), {"test_nme": 0.3})
    untagged = log_fake_cell_run(client, experiment, "study4", cell("mle", 2), {"test_nme": 0.3})
    cpu_tags = {"machine.cpu": "AMD EPYC", "machine.cpu_capability": "AVX2", "machine.cuda": "None"}
    for key, value in cpu_tags.items():
        client.set_tag(cpu, key, value)
    for key, value in {**cpu_tags, "machine.cuda": "NVIDIA H200"}.items():
        client.set_tag(gpu, key, value)
    machines = comparison_runs(client, "study4").set_index("run_id")["machine"]
    assert machines[cpu] == "AMD EPYC (AVX2)" and machines[gpu] == "NVIDIA H200"
    assert pd.isna(machines[untagged])


def test_a_run_with_a_non_numeric_seed_tag_is_named(store):
    client, experiment = store
    run = log_fake_cell_run(client, experiment, "study5", cell("mle", 0), {"test_nme": 0.3})
    client.set_tag(run, "seed", "zero")
    with pytest.raises(ValueError, match=rf"run {run} has the non-numeric seed tag 'zero'"):
        comparison_runs(client, "study5")


def test_unfinished_runs_of_each_cell_newest_first(store):
    client, experiment = store
    failed = log_fake_cell_run(client, experiment, "study6", cell("mle", 0), {}, status="FAILED")
    time.sleep(0.01)
    killed = log_fake_cell_run(client, experiment, "study6", cell("mle", 0), {}, status="KILLED")
    time.sleep(0.01)
    never_ended = log_fake_cell_run(client, experiment, "study6", cell("cpm", 0), {}, status="RUNNING")
    log_fake_cell_run(client, experiment, "study6", cell("cpm", 1), {"test_nme": 0.2})  # finished
    log_fake_cell_run(client, experiment, "study6", cell("mle", 1, config="old"), {}, status="KILLED")
    plan = [cell("mle", 0), cell("cpm", 0), cell("cpm", 1), cell("mle", 1)]
    runs = comparison_runs(client, "study6", status=None)
    assert unfinished_runs(runs, plan) == {
        "mle-clean-scratch-s0": [killed, failed],
        "cpm-clean-scratch-s0": [never_ended],
    }  # not the finished cell, nor a run made with other settings


def test_per_crop_tables_are_read_from_the_runs_that_logged_them(store, tmp_path):
    client, experiment = store
    with_table = log_fake_cell_run(client, experiment, "crops_study", cell("mle", 0), {"test_nme": 0.3})
    without = log_fake_cell_run(client, experiment, "crops_study", cell("mle", 1), {"test_nme": 0.3})
    table = pd.DataFrame({"crop_path": ["a.jpg", "b.jpg"], "n_normalised": [21, 20], "nme_sum": [2.1, 3.0]})
    (tmp_path / "test_per_crop.csv").write_text(table.to_csv(index=False))
    client.log_artifact(with_table, str(tmp_path / "test_per_crop.csv"), "evaluation")
    tables = per_crop_tables(client, [with_table, without])
    assert list(tables) == [with_table]  # a run evaluated before the artifact existed is left out
    pd.testing.assert_frame_equal(tables[with_table], table)
