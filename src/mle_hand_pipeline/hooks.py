"""Project hooks."""

from __future__ import annotations

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline

PREPROCESS_OUTPUTS = {"freihand.hands": "freihand", "rhd.hands": "rhd"}


class MissingPreprocessOutputError(FileNotFoundError):
    pass


class RequirePreprocessedData:
    """Stop a training or evaluation run at once, with the command to run, when crops are missing."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Pipeline, catalog: DataCatalog) -> None:
        produced = pipeline.all_outputs()
        for name, dataset in PREPROCESS_OUTPUTS.items():
            if name in pipeline.inputs() and name not in produced and not catalog.exists(name):
                if mlflow.active_run():  # kedro-mlflow opened it already; don't leave it as "finished"
                    mlflow.end_run("FAILED")
                raise MissingPreprocessOutputError(
                    f"'{name}' does not exist yet: run `kedro run --pipeline={dataset}_preprocess` first "
                    f"(add --params={dataset}_root=PATH for the real {dataset.upper()} download)"
                )
