"""mle_hand_pipeline: 2D hand keypoints with the MLE loss of Zhang et al. (IEEE Access 2024)."""

__version__ = "0.1.0"
