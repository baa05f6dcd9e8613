"""``synthetic_data``: procedural hands written as small FreiHAND- and RHD-layout datasets."""

from mle_hand_pipeline.pipelines.synthetic_data.pipeline import create_pipeline

__all__ = ["create_pipeline"]
