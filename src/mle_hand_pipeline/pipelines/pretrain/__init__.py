"""``pretrain_rhd``: a backbone trained offline on a separate synthetic set (the pretrained regime)."""

from mle_hand_pipeline.pipelines.pretrain.pipeline import create_pipeline

__all__ = ["create_pipeline"]
