"""``evaluate_rhd`` / ``evaluate_freihand``: evaluate a checkpoint or an MLflow model on the test split."""

from mle_hand_pipeline.pipelines.evaluate.pipeline import create_pipeline

__all__ = ["create_pipeline"]
