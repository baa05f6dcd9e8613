"""The runs of a comparison in an MLflow tracking store, found by their ``comparison`` tag."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from mle_hand_pipeline.grid.cells import TAG_KEYS, Cell

RUN_COLUMNS = ["run_id", "status", "start_time", "end_time", "machine", *TAG_KEYS]


PER_CROP_ARTIFACT = "evaluation/test_per_crop.csv"  # each crop's part of the pooled test metrics
GROUP_TAG = "comparison_role"  # "group": the run a comparison's runs are nested under in MLflow's UI


def comparison_group(client: MlflowClient, experiment_id: str, comparison: str) -> str:
    """The id of the run that groups ``comparison`` in ``experiment_id``: its cells' runs and reports are
    nested under it (``mlflow.parentRunId``) and it carries the report's summary. Found by its tags
    (the oldest if two machines made one at once), else created as ``comparison <name>`` and marked
    FINISHED: any cell, on any machine or day, finds the same one."""
    query = f"tags.comparison = '{comparison}' and tags.{GROUP_TAG} = 'group'"
    found = client.search_runs([experiment_id], query, order_by=["attributes.start_time ASC"], max_results=1)
    if found:
        return found[0].info.run_id
    tags = {"comparison": comparison, GROUP_TAG: "group"}
    run = client.create_run(experiment_id, run_name=f"comparison {comparison}", tags=tags)
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


class StaleComparisonError(ValueError):
    """Finished runs of the same comparison and cell were made with other settings."""


def comparison_runs(
    client: MlflowClient,
    comparison: str,
    status: str | None = "FINISHED",
    experiment_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per cell run tagged ``comparison`` (in every active experiment unless ``experiment_ids``):
    ``RUN_COLUMNS`` and every metric of the run as its own column (its last value). Newest first.
    ``machine`` is "CPU model (instruction set)" or "GPU name" from the run's ``machine.*`` tags (None
    for runs made before they existed)."""
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    query = f"tags.comparison = '{comparison}'"
    if status:
        query += f" and attributes.status = '{status}'"
    rows = []
    for run in client.search_runs(
        list(experiment_ids), query, order_by=["attributes.start_time DESC"], max_results=50000
    ):
        tags = run.data.tags
        if "cell" not in tags:  # the comparison's group and report runs: not cells
            continue
        rows.append(
            {
                "run_id": run.info.run_id,
                "status": run.info.status,
                "start_time": run.info.start_time,
                "end_time": run.info.end_time,
                "machine": _machine(tags),
                **{k: tags.get(k) for k in TAG_KEYS},
                **run.data.metrics,
            }
        )
    frame = pd.DataFrame(rows, columns=None if rows else RUN_COLUMNS)
    if rows:
        seeds = pd.to_numeric(frame["seed"], errors="coerce")
        bad = frame.loc[seeds.isna() & frame["seed"].notna(), ["run_id", "seed"]]
        if len(bad):
            raise ValueError(
                f"comparison {comparison!r}: run {bad['run_id'].iloc[0]} has the non-numeric seed tag "
                f"{bad['seed'].iloc[0]!r} ({len(bad)} such run(s)); fix or delete the tag"
            )
        frame["seed"] = seeds.astype("Int64")
    return frame


def _machine(tags: dict[str, str]) -> str | None:
    if tags.get("machine.cuda") not in (None, "None"):
        return tags["machine.cuda"]
    if "machine.cpu" in tags:
        return f"{tags['machine.cpu']} ({tags.get('machine.cpu_capability')})"
    return None


def latest_per_cell(runs: pd.DataFrame) -> pd.DataFrame:
    """The newest run of each cell (a cell run twice, e.g. by a resubmitted cluster job, counts once)."""
    return runs.sort_values("start_time", ascending=False).drop_duplicates("cell").reset_index(drop=True)


def finished_cells(runs: pd.DataFrame, cells: Sequence[Cell]) -> dict[str, str]:
    """``{cell key: run id}`` of the cells that have a FINISHED run with the same settings.

    Raises:
        StaleComparisonError: a cell has finished runs, but none with its current settings
            (``cell_config``): the parameters changed since, so the comparison would mix two setups.
    """
    finished = runs[runs["status"] == "FINISHED"]
    done, stale = {}, []
    for cell in cells:
        same = finished[finished["cell"] == cell.key]
        if same.empty:
            continue
        matching = same[same["cell_config"] == cell.config]
        if matching.empty:
            stale.append(f"{cell.key} (settings {same['cell_config'].iloc[0]}, now {cell.config})")
        else:
            done[cell.key] = str(matching["run_id"].iloc[0])
    if stale:
        comparison = finished["comparison"].iloc[0]
        raise StaleComparisonError(
            f"comparison {comparison!r} already has finished runs of {len(stale)} cell(s) made with other "
            f"settings: {', '.join(stale[:5])}{' ...' if len(stale) > 5 else ''}. Give this comparison "
            "a new compare.name (e.g. --params=<dataset>.compare.name=...), or delete those runs."
        )
    return done


def unfinished_runs(runs: pd.DataFrame, cells: Sequence[Cell]) -> dict[str, list[str]]:
    """``{cell key: [run id, ...]}``, newest first, of each cell's runs that did not finish (KILLED,
    FAILED, or RUNNING: a process killed outright never reports its end) with the cell's current
    settings: the runs whose checkpoints may continue the cell."""
    unfinished = runs[runs["status"] != "FINISHED"].sort_values("start_time", ascending=False)
    found = {}
    for cell in cells:
        same = unfinished[(unfinished["cell"] == cell.key) & (unfinished["cell_config"] == cell.config)]
        if len(same):
            found[cell.key] = same["run_id"].astype(str).tolist()
    return found


def per_crop_tables(client: MlflowClient, run_ids: Sequence[str]) -> dict[str, pd.DataFrame]:
    """``{run id: its test crops' parts of the pooled metrics}`` (the evaluation's
    ``test_per_crop.csv`` artifact); runs evaluated before the artifact existed are left out."""
    tables = {}
    folder = str(Path(PER_CROP_ARTIFACT).parent)
    with tempfile.TemporaryDirectory() as tmp:
        for run_id in run_ids:
            if PER_CROP_ARTIFACT not in {a.path for a in client.list_artifacts(run_id, folder)}:
                continue
            tables[run_id] = pd.read_csv(client.download_artifacts(run_id, PER_CROP_ARTIFACT, tmp))
    return tables
