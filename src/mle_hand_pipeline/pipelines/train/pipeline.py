"""``train_rhd`` and ``train_freihand``: one template, namespaced per dataset."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from mle_hand_pipeline.evaluation.plots import evaluation_figures
from mle_hand_pipeline.evaluation.report import EVALUATION_FIGURES, EVALUATION_OUTPUTS
from mle_hand_pipeline.pipelines.train.nodes import (
    evaluate_checkpoint,
    log_model,
    plot_history,
    prune_checkpoints,
    select_model,
    train_model,
)
from mle_hand_pipeline.tracking import tag_run


def evaluation_plot_node(prefix: str) -> Node:
    """The node drawing the five evaluation figures from ``<prefix>_*`` tables (train and evaluate)."""
    return Node(
        evaluation_figures,
        [
            f"{prefix}_{name}"
            for name in ("predictions", "per_keypoint", "per_stage", "pck_curve", "calibration")
        ]
        + ["crops"],
        {name: f"{prefix}_{name}_plot" for name in EVALUATION_FIGURES},
        name=f"plot_{prefix}_evaluation",
    )


def _template() -> Pipeline:
    return Pipeline(
        [
            Node(
                train_model,
                [
                    "hands",
                    "crops",
                    "checkpoints",
                    "preprocess_summary",
                    "params:model",
                    "params:train",
                ],
                ["train_history", "training_report"],
                name="train_model",
            ),
            Node(tag_run, "params:tracking", None, name="tag_run"),
            Node(plot_history, "train_history", "training_curves", name="plot_history"),
            Node(select_model, ["training_report", "params:evaluate"], "model", name="select_model"),
            Node(
                evaluate_checkpoint,
                ["hands", "crops", "model", "params:evaluate"],
                [f"test_{name}" for name in EVALUATION_OUTPUTS],
                name="evaluate_test",
            ),
            evaluation_plot_node("test"),
            Node(log_model, ["model", "params:evaluate"], "logged_model", name="log_model"),
            Node(
                prune_checkpoints,
                ["training_report", "params:evaluate", "test_metrics", "logged_model"],
                None,
                name="prune_checkpoints",
            ),
        ]
    )


def create_pipeline(dataset: str) -> Pipeline:
    """Train ``params:<dataset>.model`` with ``params:<dataset>.train`` on ``<dataset>.hands`` and
    evaluate on its test split, then prune the run folder's checkpoints (``evaluate.keep_checkpoints``).
    Outputs ``<dataset>.train_history``, ``<dataset>.training_report``, ``<dataset>.model`` (the
    evaluated checkpoint published, versioned: in the run's own folder for a comparison's cell),
    ``<dataset>.training_curves``, ``<dataset>.test_{metrics,predictions,per_keypoint,per_stage,
    pck_curve,calibration}`` and the figures ``<dataset>.test_{pck_curve,per_keypoint_nme,
    per_stage_pck,calibration,qualitative}_plot``."""
    return Pipeline(
        _template(),
        namespace=dataset,
        parameters={
            "params:model": f"params:{dataset}.model",
            "params:train": f"params:{dataset}.train",
            "params:evaluate": f"params:{dataset}.evaluate",
            "params:tracking": f"params:{dataset}.tracking",
        },
        tags=["train", dataset],
    )
