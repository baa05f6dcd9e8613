"""Project hooks."""

from __future__ import annotations

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline

PREPROCESS_OUTPUTS = {"freihand_hands": "freihand", "rhd_hands": "rhd"}


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


class KedroRunParams:
    """Give a pipeline that launches child ``kedro run``s (the comparison grid) the parent's run:
    the dataset ``kedro_run_params`` = ``{"project_path", "env", "runtime_params"}``, so each child
    runs in the same project with the same environment and ``--params``."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Pipeline, catalog: DataCatalog) -> None:
        if "kedro_run_params" in pipeline.inputs():
            catalog["kedro_run_params"] = {
                "project_path": run_params["project_path"],
                "env": run_params.get("env"),
                "runtime_params": run_params.get("runtime_params") or {},
            }
