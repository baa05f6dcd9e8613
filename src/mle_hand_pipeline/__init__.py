"""mle_hand_pipeline: 2D hand keypoints with the MLE loss of "MLE-Loss Driven Robust Hand Pose Estimation"
(Lou, Lin, Zhu, Chen; IEEE Access 2024)."""

__version__ = "0.6.0"
