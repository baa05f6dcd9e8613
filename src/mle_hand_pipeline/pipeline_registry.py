"""The project's pipelines; their names are part of the command-line interface."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from mle_hand_pipeline.pipelines import (
    compare,
    evaluate,
    predict,
    preprocess,
    pretrain,
    synthetic_data,
    train,
)


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = {
        "synthetic_data": synthetic_data.create_pipeline(),
        "freihand_preprocess": preprocess.create_pipeline("freihand"),
        "rhd_preprocess": preprocess.create_pipeline("rhd"),
        "train_freihand": train.create_pipeline("freihand"),
        "train_rhd": train.create_pipeline("rhd"),
        "evaluate_freihand": evaluate.create_pipeline("freihand"),
        "evaluate_rhd": evaluate.create_pipeline("rhd"),
        "compare_freihand": compare.create_pipeline("freihand"),
        "compare_rhd": compare.create_pipeline("rhd"),
        "compare_report_freihand": compare.create_report_pipeline("freihand"),
        "compare_report_rhd": compare.create_report_pipeline("rhd"),
        "compare_commands_freihand": compare.create_commands_pipeline("freihand"),
        "compare_commands_rhd": compare.create_commands_pipeline("rhd"),
        "predict": predict.create_pipeline(),
        "pretrain_rhd": pretrain.create_pipeline("rhd"),
    }
    # `kedro run` alone is the quickstart: synthetic data -> both preprocessings (reading the synthetic
    # folders the first pipeline outputs, not params:<dataset>_root) -> training and evaluation on RHD.
    # The step pipelines above stay for real data (`--params=rhd_root=...`) and single steps.
    pipelines["__default__"] = (
        pipelines["synthetic_data"]
        + preprocess.create_pipeline("freihand", raw_root="synthetic_freihand_raw")
        + preprocess.create_pipeline("rhd", raw_root="synthetic_rhd_raw")
        + pipelines["train_rhd"]
    )
    return pipelines
