"""``predict``: keypoints, sigmas and overlays for new images from a trained model."""

from mle_hand_pipeline.pipelines.predict.pipeline import create_pipeline

__all__ = ["create_pipeline"]
