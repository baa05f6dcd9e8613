"""``compare_rhd`` and ``compare_freihand``: one template, namespaced per dataset."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from mle_hand_pipeline.pipelines.compare.nodes import compare_methods, plot_comparison

TABLES = ("comparison_table", "comparison_pck_curves", "comparison_per_keypoint", "comparison_per_stage")
FIGURES = ("pck_curves", "per_keypoint_nme", "per_stage_pck", "noise_robustness")


def create_pipeline(dataset: str) -> Pipeline:
    """Train and evaluate every method of ``params:<dataset>.compare.methods`` (x ``noise_levels``)
    with ``params:<dataset>.model``/``train``/``evaluate``. Outputs ``<dataset>.comparison_table``,
    ``<dataset>.comparison_{pck_curves,per_keypoint,per_stage}`` (long tables) and the figures
    ``<dataset>.comparison_{pck_curves,per_keypoint_nme,per_stage_pck,noise_robustness}_plot``."""
    template = Pipeline(
        [
            Node(
                compare_methods,
                [
                    "hands",
                    "crops",
                    "checkpoints",
                    "params:model",
                    "params:train",
                    "params:evaluate",
                    "params:compare",
                ],
                list(TABLES),
                name="compare_methods",
            ),
            Node(
                plot_comparison,
                [*TABLES, "params:compare"],
                [f"comparison_{name}_plot" for name in FIGURES],
                name="plot_comparison",
            ),
        ]
    )
    return Pipeline(
        template,
        namespace=dataset,
        parameters={
            "params:model": f"params:{dataset}.model",
            "params:train": f"params:{dataset}.train",
            "params:evaluate": f"params:{dataset}.evaluate",
            "params:compare": f"params:{dataset}.compare",
        },
        tags=["compare", dataset],
    )
