"""Nodes of the compare pipelines: glue between the parameters, the grid library and MLflow.

``compare_<dataset>`` runs each cell of the grid as an ordinary ``train_<dataset>`` run (a child
``kedro run``), skipping cells that already have a finished run and continuing interrupted ones from
their ``last.pt``, then reports; ``compare_report_<dataset>``
rebuilds the report from MLflow alone; ``compare_commands_<dataset>`` prints the cells' command lines.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from mle_hand_pipeline import tracking
from mle_hand_pipeline.grid import cells as C
from mle_hand_pipeline.grid import report as R
from mle_hand_pipeline.grid.mlflow_runs import (
    comparison_runs,
    finished_cells,
    latest_per_cell,
    per_crop_tables,
    unfinished_runs,
)
from mle_hand_pipeline.grid.runner import Job, run_jobs
from mle_hand_pipeline.parameters import CompareParams
from mle_hand_pipeline.training.run_dirs import is_interrupted

logger = logging.getLogger(__name__)

PLAN_COLUMNS = ["cell", "method", "noise", "init", "seed", "cell_config"]
FIGURES = (
    "nme_by_method",
    "pck_by_method",
    "nme_vs_noise",
    "pck_vs_noise",
    "nme_change",
    "pck_change",
    "nme_pretrained",
    "pck_pretrained",
    "nme_stages",
    "pck_stages",
)


def _name(dataset: str, compare: CompareParams) -> str:
    return C.validate_comparison_name(compare.name or f"compare_{dataset}")


def _plan(dataset: str, model: dict, train: dict, evaluate: dict, compare: CompareParams) -> list[C.Cell]:
    backbone = compare.pretrained_backbone
    return C.plan_cells(
        model, train, evaluate, compare, backbone.format(dataset=dataset) if backbone else None
    )


def _plan_table(cells: list[C.Cell]) -> pd.DataFrame:
    rows = [[c.key, c.method, c.noise, c.init, c.seed, c.config] for c in cells]
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


def _todo(
    dataset: str, compare: CompareParams, cells: list[C.Cell], kedro_run: dict, checkpoints: Path
) -> tuple[list[C.Cell], dict[str, str], dict[str, str]]:
    """The cells without a finished run of the same settings, ``{key: run id}`` of the others, and
    ``{key: run id}`` of the cells to run that continue an interrupted run: the newest of the cell's
    unfinished runs whose folder in ``checkpoints`` (relative: to the project folder, where the cells'
    ``kedro run`` starts) still holds its ``last.pt`` (``compare.resume_interrupted``)."""
    runs = comparison_runs(MlflowClient(), _name(dataset, compare), status=None)
    done = finished_cells(runs, cells)
    if done:
        logger.info("%d of %d cells already have a finished run: skipped", len(done), len(cells))
    todo = [c for c in cells if c.key not in done]
    resume = {}
    if compare.resume_interrupted:
        methods = {c.key: c.method for c in todo}
        folder = Path(kedro_run["project_path"]) / checkpoints
        for key, run_ids in unfinished_runs(runs, todo).items():
            found = [r for r in run_ids if is_interrupted(folder / methods[key] / r)]
            if found:
                resume[key] = found[0]
                logger.info("cell %s continues its interrupted run %s", key, found[0])
    return todo, done, resume


def _command(
    dataset: str,
    compare: CompareParams,
    cell: C.Cell,
    kedro_run: dict,
    kedro: list[str],
    resume: str | None,
) -> list[str]:
    params = C.cell_params(
        cell,
        dataset,
        _name(dataset, compare),
        kedro_run.get("runtime_params"),
        compare,
        resume,
    )
    return C.kedro_command(params, dataset, kedro_run.get("env"), kedro)


def plan_comparison(
    dataset: str,
    model: dict[str, Any],
    train: dict[str, Any],
    evaluate: dict[str, Any],
    compare: dict[str, Any],
) -> pd.DataFrame:
    """The planned cells (``PLAN_COLUMNS``), for a report of runs made elsewhere."""
    compare = CompareParams.of(compare)
    return _plan_table(_plan(dataset, model, train, evaluate, compare)).assign(status="planned")


def run_grid(
    dataset: str,
    kedro_run: dict[str, Any],
    logs_dir: Path,
    checkpoints: Path,
    model: dict[str, Any],
    train: dict[str, Any],
    evaluate: dict[str, Any],
    compare: dict[str, Any],
) -> pd.DataFrame:
    """Run every cell that has no finished run yet as ``kedro run --pipelines=train_<dataset>``,
    ``compare.jobs`` at a time, each writing ``<logs_dir>/<comparison>/<cell>.log``. A cell whose run
    was interrupted (killed, failed, or its machine gone) continues it from its ``last.pt`` in
    ``checkpoints`` (``train.resume``; ``compare.resume_interrupted: false`` starts it again).

    Returns the plan with ``status`` (``finished``, ``skipped`` = finished before, ``failed``),
    ``run_id``, ``returncode``, ``wall_s``, ``log`` and ``error`` (the failed run's last log line).
    """
    compare = CompareParams.of(compare)
    cells = _plan(dataset, model, train, evaluate, compare)
    todo, done, resume = _todo(dataset, compare, cells, kedro_run, checkpoints)
    kedro = [sys.executable, "-m", "kedro"]
    folder = Path(logs_dir) / _name(dataset, compare)
    jobs = [
        Job(
            c.key,
            _command(dataset, compare, c, kedro_run, kedro, resume.get(c.key)),
            folder / f"{c.key}.log",
            C.cell_outputs(dataset, _name(dataset, compare), c),
        )
        for c in todo
    ]
    outcomes = {o.key: o for o in run_jobs(jobs, compare.jobs, cwd=kedro_run["project_path"])}
    finished = latest_per_cell(comparison_runs(MlflowClient(), _name(dataset, compare)))
    run_ids = dict(zip(finished["cell"], finished["run_id"], strict=True))
    rows = []
    for cell in cells:
        outcome = outcomes.get(cell.key)
        row = {"status": "skipped", "run_id": done.get(cell.key), "returncode": None, "wall_s": None}
        if outcome:
            ok = outcome.returncode == 0
            row = {
                "status": "finished" if ok else "failed",
                "run_id": run_ids.get(cell.key),
                "returncode": outcome.returncode,
                "wall_s": round(outcome.wall_s, 1),
                "log": str(outcome.log),
                "error": outcome.error,
            }
        rows.append(row)
    table = pd.concat([_plan_table(cells), pd.DataFrame(rows)], axis=1)
    failed = table[table["status"] == "failed"]
    if len(failed):
        logger.warning("%d of %d cells failed: %s", len(failed), len(table), ", ".join(failed["cell"]))
    return table


def grid_commands(
    dataset: str,
    kedro_run: dict[str, Any],
    checkpoints: Path,
    model: dict[str, Any],
    train: dict[str, Any],
    evaluate: dict[str, Any],
    compare: dict[str, Any],
) -> str:
    """One shell command per cell still to run (run each from the project folder, in any order or
    all at once), printed and returned as the text of ``commands.txt``: line N is cell N. A cell whose
    run was interrupted continues it, as in :func:`run_grid`."""
    compare = CompareParams.of(compare)
    cells = _plan(dataset, model, train, evaluate, compare)
    todo, _, resume = _todo(dataset, compare, cells, kedro_run, checkpoints)
    lines = [
        C.shell_line(
            _command(dataset, compare, c, kedro_run, ["kedro"], resume.get(c.key)),
            C.cell_outputs(dataset, _name(dataset, compare), c),
        )
        for c in todo
    ]
    text = "".join(f"{line}\n" for line in lines)
    print(text, end="")
    logger.info("%d of %d cells to run, from %s", len(todo), len(cells), kedro_run["project_path"])
    return text


def report_comparison(
    dataset: str, cells: pd.DataFrame, compare: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str, *tuple[Figure, ...]]:
    """The report of the comparison's finished runs, read from MLflow alone.

    Args:
        cells: the planned cells (``cell``; with ``status`` and ``error`` when the grid ran them).

    Returns:
        ``(runs, summary, stages, verdict, *figures)``: one row per cell (tags, metrics), mean/std/95 %
        interval per method x noise x init, the same of stage 1, the last stage and their paired
        difference for the multi-stage methods, the markdown verdict, and :data:`FIGURES`.
    """
    compare = CompareParams.of(compare)
    name = _name(dataset, compare)
    metrics = {k: v == "higher" for k, v in compare.report_metrics.items()}
    runs = latest_per_cell(comparison_runs(MlflowClient(), name))
    if runs.empty:
        failed = cells[cells["status"] == "failed"] if "status" in cells else cells.iloc[:0]
        first = (
            f"; e.g. cell {failed['cell'].iloc[0]} failed: {failed['error'].iloc[0]}" if len(failed) else ""
        )
        raise ValueError(
            f"no finished run is tagged comparison={name!r} in MLflow ({mlflow.get_tracking_uri()}){first}"
        )
    table = R.cell_table(runs, list(metrics), order=list(cells["cell"]))
    per_crop = per_crop_tables(MlflowClient(), table["run_id"].tolist())
    # the validation figures the runs were chosen on, beside the test figures (runs that logged them)
    validation = [m for m in R.VALIDATION_METRICS if table[m].notna().any()]
    summarised = R.summarise(table, [*metrics, *validation])
    summary = R.with_crop_intervals(summarised, table, per_crop, list(metrics))
    stages = R.summarise_stages(R.stage_table(runs.set_index("cell").loc[table["cell"]].reset_index()))
    figures = R.figures(summary, table) | R.stage_figures(stages)
    differences = R.crop_differences(table, per_crop, list(metrics))
    text = R.verdict(name, dataset, summary, metrics, cells, table, stages, differences)
    files = {"verdict.md": text, "summary.csv": summary, **{f"{f}.png": figures[f] for f in FIGURES}}
    tracking.log_comparison_report(name, summary, list(metrics), files)
    return table, summary, stages, text, *(figures[f] for f in FIGURES)
