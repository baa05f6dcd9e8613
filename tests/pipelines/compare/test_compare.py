"""compare_rhd's nodes: the grid skips finished cells, runs the others as `kedro run` commands and
records failures; the commands pipeline prints what is left; the report reads MLflow alone."""

import json
import shlex
import sys
import time

import mlflow
import pytest
from helpers import TINY_MODEL_PARAMS, TINY_TRAIN_PARAMS, log_fake_cell_run
from mlflow.tracking import MlflowClient

from mle_hand_pipeline.grid.runner import Outcome
from mle_hand_pipeline.parameters import CompareParams
from mle_hand_pipeline.pipeline_registry import register_pipelines
from mle_hand_pipeline.pipelines.compare import nodes

MODEL = {**TINY_MODEL_PARAMS, "method": "mle", "init_checkpoint": None}
TRAIN = {**TINY_TRAIN_PARAMS, "seed": 0}
EVALUATE = {"checkpoint": "best", "batch_size": 16, "model": None, "log_model": True}
COMPARE = {
    "methods": ["mle", "cpm"],
    "seeds": [0, 1],
    "noise_levels": [{"name": "clean"}],
    "jobs": 2,
    "report_metrics": {"test_nme": "lower", "test_pck_0.2": "higher"},
}
BLOCKS = (MODEL, TRAIN, EVALUATE, CompareParams.of(COMPARE))
KEDRO_RUN = {"project_path": "/project", "env": None, "runtime_params": {"rhd": {"train": {"epochs": 1}}}}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store for the module (creating one takes seconds); the tests use their own names."""
    tmp_path = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    yield client, client.create_experiment("e", artifact_location=(tmp_path / "mlruns").as_uri())
    mlflow.set_tracking_uri(None)


def test_the_grid_skips_finished_cells_runs_the_rest_and_reports(store, tmp_path, monkeypatch, capsys):
    client, experiment = store
    cells = {c.key: c for c in nodes._plan("rhd", *BLOCKS)}
    before = log_fake_cell_run(
        client, experiment, "compare_rhd", cells["mle-clean-scratch-s0"], {"test_nme": 0.3}
    )

    # the commands pipeline prints the 3 cells left, one line each
    text = nodes.grid_commands("rhd", KEDRO_RUN, tmp_path / "checkpoints", *BLOCKS)
    assert capsys.readouterr().out == text and len(text.splitlines()) == 3
    first = shlex.split(text.splitlines()[0])
    # each cell writes its reports in its own folder (MLE_HAND_RUN_OUTPUTS replaces `data` in catalog.yml)
    comparison = nodes._name("rhd", BLOCKS[-1])
    assert (
        first[0]
        == f"MLE_HAND_RUN_OUTPUTS=data/08_reporting/rhd/compare/{comparison}/cells/cpm-clean-scratch-s0"
    )
    assert first[1:4] == ["kedro", "run", "--pipelines=train_rhd"]
    assert first[4].startswith("--params=rhd.train.epochs=1,")  # the parent's --params, then the cell's
    assert "rhd.tracking.tags.cell=cpm-clean-scratch-s0" in text.splitlines()[0]

    started, failing = [], ["cpm-clean-scratch-s1"]

    def fake_run_jobs(jobs, processes, cwd):
        """Stands for the training runs: cpm seed 1 fails once, the others leave a finished tagged run."""
        assert processes == 2 and cwd == "/project"
        outcomes = []
        for job in jobs:
            started.append(job)
            if job.key in failing:
                failing.remove(job.key)
                outcomes.append(Outcome(job.key, 1, 2.0, job.log, "NonFiniteLossError: 20 steps"))
                continue
            metrics = {"test_nme": 0.2, "test_pck_0.2": 0.5}
            if job.key.startswith("mle"):  # a two-stage model's per-stage metrics, as evaluate_test logs
                metrics |= {"test_stage1_nme": 0.25, "test_stage2_nme": 0.2}
                metrics |= {"test_stage1_pck_0.2": 0.45, "test_stage2_pck_0.2": 0.5}
            log_fake_cell_run(client, experiment, "compare_rhd", cells[job.key], metrics)
            outcomes.append(Outcome(job.key, 0, 3.0, job.log))
        return outcomes

    monkeypatch.setattr(nodes, "run_jobs", fake_run_jobs)
    table = nodes.run_grid("rhd", KEDRO_RUN, tmp_path / "logs", tmp_path / "checkpoints", *BLOCKS)
    assert [j.key for j in started] == [
        "cpm-clean-scratch-s0",
        "mle-clean-scratch-s1",
        "cpm-clean-scratch-s1",
    ]
    assert started[0].argv[:5] == [sys.executable, "-m", "kedro", "run", "--pipelines=train_rhd"]
    assert started[0].log == tmp_path / "logs/compare_rhd/cpm-clean-scratch-s0.log"
    assert table["status"].tolist() == ["skipped", "finished", "finished", "failed"]
    assert table.loc[0, "run_id"] == before and table["run_id"].notna().tolist() == [True, True, True, False]
    assert table.loc[3, "error"] == "NonFiniteLossError: 20 steps"

    runs, summary, stages, verdict, *figures = nodes.report_comparison("rhd", table, COMPARE)
    assert runs["cell"].tolist() == list(table["cell"][:3])  # the plan's order
    assert summary.set_index("method")["n_seeds"].to_dict() == {"mle": 2, "cpm": 1}
    # the one multi-stage run that logged its stages (mle s1; s0 was logged without them)
    (mle,) = stages.to_dict("records")
    assert (mle["method"], mle["stages"], mle["n_seeds"]) == ("mle", 2, 1)
    assert mle["gain_pck_0.2_mean"] == pytest.approx(0.05) and mle["gain_nme_mean"] == pytest.approx(-0.05)
    assert "## Stage refinement" in verdict
    assert (
        "3 of 4 planned cells" in verdict and "`cpm-clean-scratch-s1`: failed: NonFiniteLossError" in verdict
    )
    assert len(figures) == len(nodes.FIGURES)

    # the report pipeline's plan (MLflow alone) gives the same report
    plan = nodes.plan_comparison("rhd", *BLOCKS)
    assert nodes.report_comparison("rhd", plan, COMPARE)[0].equals(runs)

    # run again: only the failed cell runs; a third time: nothing is left to run
    started.clear()
    rerun = nodes.run_grid("rhd", KEDRO_RUN, tmp_path / "logs", tmp_path / "checkpoints", *BLOCKS)
    assert [j.key for j in started] == ["cpm-clean-scratch-s1"]
    assert rerun["status"].tolist() == ["skipped", "skipped", "skipped", "finished"]
    assert rerun["run_id"].notna().all() and rerun["run_id"][:3].tolist() == table["run_id"][:3].tolist()
    started.clear()
    rerun = nodes.run_grid("rhd", KEDRO_RUN, tmp_path / "logs", tmp_path / "checkpoints", *BLOCKS)
    assert started == [] and (rerun["status"] == "skipped").all()
    with pytest.raises(
        ValueError, match=r"comparison='other'.*cpm-clean-scratch-s1 failed: NonFiniteLossError"
    ):
        nodes.report_comparison("rhd", table, {**COMPARE, "name": "other"})  # says why, when it knows


def test_changed_settings_under_the_same_name_stop_the_grid(store, tmp_path, monkeypatch):
    client, experiment = store
    compare = {**COMPARE, "name": "stale"}
    cell = nodes._plan("rhd", MODEL, TRAIN, EVALUATE, CompareParams.of(compare))[0]
    log_fake_cell_run(client, experiment, "stale", cell, {"test_nme": 0.3})
    monkeypatch.setattr(nodes, "run_jobs", lambda *a, **k: pytest.fail("nothing may run"))
    longer = {**TRAIN, "epochs": 5}
    with pytest.raises(ValueError, match=r"other settings.*compare\.name"):
        nodes.run_grid("rhd", KEDRO_RUN, tmp_path, tmp_path, MODEL, longer, EVALUATE, compare)


def test_an_interrupted_cell_continues_its_newest_interrupted_run(store, tmp_path, monkeypatch):
    client, experiment = store
    compare = {**COMPARE, "name": "interrupted", "methods": ["mle"], "seeds": [0, 1, 2], "jobs": 1}
    blocks = (MODEL, TRAIN, EVALUATE, CompareParams.of(compare))
    cells = {c.key: c for c in nodes._plan("rhd", *blocks)}
    checkpoints = tmp_path / "checkpoints"

    def interrupted(key, status, folder_status="killed", last_pt=True):
        """A cell's unfinished MLflow run and the run folder it left (named after the run, as train_rhd's)."""
        time.sleep(0.01)  # distinct start times: the newest interrupted run is the one continued
        run_id = log_fake_cell_run(client, experiment, "interrupted", cells[key], {}, status=status)
        folder = checkpoints / "mle" / run_id
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps({"status": folder_status}))
        if last_pt:
            (folder / "last.pt").write_bytes(b"state")
        return run_id

    interrupted("mle-clean-scratch-s0", "FAILED", folder_status="failed")
    newest = interrupted("mle-clean-scratch-s0", "RUNNING", folder_status="training")  # SIGKILL: never ended
    interrupted("mle-clean-scratch-s1", "KILLED", last_pt=False)  # killed in its first epoch: no last.pt
    interrupted("mle-clean-scratch-s2", "KILLED", folder_status="resumed")  # another run continued it

    lines = nodes.grid_commands("rhd", KEDRO_RUN, checkpoints, *blocks).splitlines()
    assert [line.count("rhd.train.resume=") for line in lines] == [1, 0, 0]
    assert (
        f"rhd.train.resume={newest}" in lines[0]
        and "rhd.tracking.tags.cell=mle-clean-scratch-s0," in lines[0]
    )

    started = []
    monkeypatch.setattr(nodes, "run_jobs", lambda jobs, processes, cwd: started.extend(jobs) or [])
    nodes.run_grid("rhd", KEDRO_RUN, tmp_path / "logs", checkpoints, *blocks)
    assert [j.key for j in started] == list(cells)
    assert f"rhd.train.resume={newest}" in started[0].argv[-1]
    assert not any("train.resume" in j.argv[-1] for j in started[1:])

    # the checkpoints folder is the project's: a relative catalog path is read from the project folder
    relative = {**KEDRO_RUN, "project_path": str(tmp_path)}
    lines = nodes.grid_commands("rhd", relative, checkpoints.relative_to(tmp_path), *blocks).splitlines()
    assert f"rhd.train.resume={newest}" in lines[0]

    # compare.resume_interrupted: false starts every unfinished cell again
    fresh = {**compare, "resume_interrupted": False}
    lines = nodes.grid_commands("rhd", KEDRO_RUN, checkpoints, MODEL, TRAIN, EVALUATE, fresh).splitlines()
    assert len(lines) == 3 and not any("train.resume" in line for line in lines)


def test_pipelines():
    pipelines = register_pipelines()
    assert pipelines["compare_rhd"].inputs() >= {
        "kedro_run_params",
        "rhd.comparison_logs",
        "params:rhd.compare",
    }
    assert "rhd.comparison_verdict" in pipelines["compare_rhd"].outputs()
    # the report needs no local file, only parameters (and MLflow)
    assert all(name.startswith("params:") for name in pipelines["compare_report_rhd"].inputs())
    assert pipelines["compare_commands_freihand"].outputs() == {"freihand.comparison_commands"}
    # each cell's train run takes its tags from params
    assert "params:rhd.tracking" in pipelines["train_rhd"].inputs()
