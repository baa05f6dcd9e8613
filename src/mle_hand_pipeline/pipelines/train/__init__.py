"""Training and test evaluation of one method on one dataset (``train_rhd``, ``train_freihand``)."""

from mle_hand_pipeline.pipelines.train.pipeline import create_pipeline

__all__ = ["create_pipeline"]
