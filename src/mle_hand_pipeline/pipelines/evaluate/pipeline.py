"""``evaluate_rhd`` and ``evaluate_freihand``: one template, namespaced per dataset."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from mle_hand_pipeline.evaluation.report import EVALUATION_OUTPUTS
from mle_hand_pipeline.pipelines.evaluate.nodes import evaluate_model
from mle_hand_pipeline.pipelines.train.pipeline import evaluation_plot_node
from mle_hand_pipeline.tracking import tag_run


def create_pipeline(dataset: str) -> Pipeline:
    """Evaluate ``params:<dataset>.evaluate.model`` (checkpoint path or MLflow URI) on the test split
    of ``<dataset>.hands``. Outputs ``<dataset>.evaluation_{metrics,predictions,per_keypoint,per_stage,
    pck_curve,calibration,per_crop}`` and the figures ``<dataset>.evaluation_*_plot``. The run takes
    ``<dataset>.tracking``'s tags and name, so a comparison's checkpoints evaluated on another test
    split can form a comparison of their own (docs/comparison.md)."""
    template = Pipeline(
        [
            Node(tag_run, "params:tracking", None, name="tag_run"),
            Node(
                evaluate_model,
                ["hands", "crops", "params:evaluate"],
                [f"evaluation_{name}" for name in EVALUATION_OUTPUTS],
                name="evaluate_model",
            ),
            evaluation_plot_node("evaluation"),
        ]
    )
    return Pipeline(
        template,
        namespace=dataset,
        parameters={
            "params:evaluate": f"params:{dataset}.evaluate",
            "params:tracking": f"params:{dataset}.tracking",
        },
        tags=["evaluate", dataset],
    )
