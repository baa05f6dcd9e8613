"""The project's pipelines; their names are part of the command-line interface."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from mle_hand_pipeline.pipelines import compare, evaluate, predict, preprocess, synthetic_data, train


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
    }
    # Each step is its own `kedro run` (and MLflow run): the preprocessing readers take the raw roots
    # as parameters, so nothing orders them after `synthetic_data` inside one run. See README.
    pipelines["__default__"] = pipelines["train_rhd"]
    return pipelines
