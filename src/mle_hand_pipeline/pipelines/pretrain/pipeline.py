"""``pretrain_rhd``: render a separate synthetic RHD-layout set, check it shares no image with the
evaluation data's validation and test splits, preprocess it like the evaluation data, train a plain
objective on it and save the network's backbone (``training.pretrained``). One ``kedro run``, one
MLflow run.

Inputs: parameters ``pretrain_rhd.*`` (``conf/base/parameters_pretrain.yml``), the evaluation data's
``rhd.preprocess`` block, ``rhd_root`` and its hand table ``rhd.hands`` (for the overlap check).
Outputs: ``rhd_pretrained_backbone`` (``data/06_models/rhd/pretrained_backbone.pt``) and the
``pretrain_rhd.*`` entries of ``conf/base/catalog_pretrain.yml`` (the preprocessing outputs have the
same names as ``rhd_preprocess``'s, under ``pretrain_rhd``).
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from mle_hand_pipeline.pipelines.preprocess.pipeline import preprocess_template
from mle_hand_pipeline.pipelines.pretrain.nodes import (
    check_no_held_out_images,
    extract_backbone,
    plot_pretrain_history,
    pretrain,
    pretrain_preprocess_settings,
    render_pretrain_set,
    rendered_root,
)


def _render() -> Pipeline:
    return Pipeline(
        [
            Node(
                render_pretrain_set,
                ["params:render", "params:seed", "params:workers", "params:evaluation_seed"],
                "render_summary",
                name="render",
            ),
            Node(rendered_root, "render_summary", "raw_root", name="rendered_root"),
            Node(
                check_no_held_out_images,
                ["render_summary", "evaluation_hands", "params:evaluation_root"],
                "held_out_check",
                name="check_no_held_out_images",
            ),
            Node(
                pretrain_preprocess_settings,
                ["params:evaluation_preprocess", "params:preprocess"],
                "preprocess_settings",
                name="preprocess_settings",
            ),
        ]
    )


def _train() -> Pipeline:
    return Pipeline(
        [
            Node(
                pretrain,
                ["hands", "crops", "checkpoints", "held_out_check", "params:model", "params:train"],
                ["train_history", "training_report"],
                name="pretrain",
            ),
            Node(plot_pretrain_history, "train_history", "training_curves", name="plot_history"),
            Node(
                extract_backbone, ["training_report", "render_summary"], "backbone", name="extract_backbone"
            ),
        ]
    )


def create_pipeline(dataset: str = "rhd") -> Pipeline:
    """The pretraining pipeline of ``dataset`` (namespace ``pretrain_<dataset>``): render, then the
    dataset's own preprocessing template (:func:`~..preprocess.pipeline.preprocess_template`) on the
    rendered folder with the merged settings, then train and extract the backbone.

    Only ``rhd`` has a renderer wired in (``nodes.render_pretrain_set``); a FreiHAND variant would
    swap that node and reuse the rest.
    """
    preprocess = Pipeline(preprocess_template(dataset), inputs={"settings": "preprocess_settings"})
    return Pipeline(
        _render() + preprocess + _train(),
        namespace=f"pretrain_{dataset}",
        inputs={"evaluation_hands": f"{dataset}.hands"},
        outputs={"backbone": f"{dataset}_pretrained_backbone"},
        parameters={
            "params:evaluation_seed": "params:synthetic_data.seed",
            "params:evaluation_root": f"params:{dataset}_root",
            "params:evaluation_preprocess": f"params:{dataset}.preprocess",
        },
        tags=["pretrain", dataset],
    )
