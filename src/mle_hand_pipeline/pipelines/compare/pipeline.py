"""``compare_<dataset>``, ``compare_report_<dataset>`` and ``compare_commands_<dataset>``: templates
namespaced per dataset (the dataset is bound to the nodes: it names the cells' ``train_<dataset>``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from mle_hand_pipeline.pipelines.compare.nodes import (
    FIGURES,
    grid_commands,
    plan_comparison,
    report_comparison,
    run_grid,
)

BLOCKS = ["params:model", "params:train", "params:evaluate", "params:compare"]
REPORT_OUTPUTS = [
    "comparison_runs",
    "comparison_summary",
    "comparison_stages",
    "comparison_verdict",
    *[f"comparison_{name}_plot" for name in FIGURES],
]


def _bound(func: Callable, dataset: str) -> Callable:
    """``func`` with ``dataset`` bound first, keeping its name (Kedro names nodes and logs by it)."""
    return update_wrapper(partial(func, dataset), func)


def _namespaced(nodes: list[Node], dataset: str) -> Pipeline:
    template = Pipeline(nodes)
    return Pipeline(
        template,
        namespace=dataset,
        # provided by the KedroRunParams hook: the parent's env, project folder and --params
        inputs={"kedro_run_params"} & template.inputs(),
        parameters={name: f"params:{dataset}.{name.removeprefix('params:')}" for name in BLOCKS},
        tags=["compare", dataset],
    )


def _report(dataset: str, cells: str) -> Node:
    return Node(_bound(report_comparison, dataset), [cells, "params:compare"], REPORT_OUTPUTS, name="report")


def create_pipeline(dataset: str) -> Pipeline:
    """Run the grid's cells (``params:<dataset>.compare``) as ``train_<dataset>`` runs, then report.
    Outputs ``<dataset>.comparison_cells`` (status per cell) and the report's outputs."""
    run = Node(
        _bound(run_grid, dataset),
        ["kedro_run_params", "comparison_logs", "checkpoints", *BLOCKS],
        "comparison_cells",
        name="run_grid",
    )
    return _namespaced([run, _report(dataset, "comparison_cells")], dataset)


def create_report_pipeline(dataset: str) -> Pipeline:
    """The report of the comparison's finished runs in MLflow, whoever ran them: ``<dataset>.comparison_
    {runs,summary,verdict}`` and the figures ``<dataset>.comparison_<figure>_plot``."""
    plan = Node(_bound(plan_comparison, dataset), BLOCKS, "comparison_plan", name="plan")
    return _namespaced([plan, _report(dataset, "comparison_plan")], dataset)


def create_commands_pipeline(dataset: str) -> Pipeline:
    """``<dataset>.comparison_commands``: one ``kedro run`` line per cell still to run."""
    commands = Node(
        _bound(grid_commands, dataset),
        ["kedro_run_params", "checkpoints", *BLOCKS],
        "comparison_commands",
        name="commands",
    )
    return _namespaced([commands], dataset)
