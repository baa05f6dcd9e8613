"""``compare_<dataset>`` (the grid of training runs, then the report), ``compare_report_<dataset>``
(the report from MLflow alone) and ``compare_commands_<dataset>`` (one command line per cell)."""

from mle_hand_pipeline.pipelines.compare.pipeline import (
    create_commands_pipeline,
    create_pipeline,
    create_report_pipeline,
)

__all__ = ["create_commands_pipeline", "create_pipeline", "create_report_pipeline"]
