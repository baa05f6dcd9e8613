"""FreiHAND and RHD preprocessing: read the original layouts, crop each hand, write a table."""

from mle_hand_pipeline.pipelines.preprocess.pipeline import create_pipeline

__all__ = ["create_pipeline"]
