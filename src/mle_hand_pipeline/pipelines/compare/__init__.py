"""``compare_rhd`` / ``compare_freihand``: every method (x label-noise level) with the same settings."""

from mle_hand_pipeline.pipelines.compare.pipeline import create_pipeline

__all__ = ["create_pipeline"]
