"""``train_rhd`` and ``train_freihand``: one template, namespaced per dataset."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from mle_hand_pipeline.pipelines.train.nodes import evaluate_checkpoint, log_model, plot_history, train_model


def _template() -> Pipeline:
    return Pipeline(
        [
            Node(train_model, ["hands", "crops_dir", "checkpoint_root", "preprocess_summary", "params:model",
                               "params:train"], ["train_history", "training_report"], name="train_model"),
            Node(plot_history, "train_history", "training_curves", name="plot_history"),
            Node(evaluate_checkpoint, ["hands", "crops_dir", "training_report", "params:evaluate"],
                 ["test_metrics", "test_predictions"], name="evaluate_test"),
            Node(log_model, ["training_report", "params:evaluate"], None, name="log_model"),
        ]
    )  # fmt: skip


def create_pipeline(dataset: str) -> Pipeline:
    """Train ``params:<dataset>.model`` with ``params:<dataset>.train`` on ``<dataset>_hands`` and
    evaluate on its test split. Outputs ``<dataset>.train_history``, ``<dataset>.training_report``,
    ``<dataset>.training_curves``, ``<dataset>.test_metrics``, ``<dataset>.test_predictions``."""
    return Pipeline(
        _template(),
        namespace=dataset,
        inputs={
            "hands": f"{dataset}_hands",
            "crops_dir": f"{dataset}_crops",
            "checkpoint_root": f"{dataset}_checkpoints",
            "preprocess_summary": f"{dataset}_preprocess_summary",
        },
        parameters={
            "params:model": f"params:{dataset}.model",
            "params:train": f"params:{dataset}.train",
            "params:evaluate": f"params:{dataset}.evaluate",
        },
        tags=["train", dataset],
    )
