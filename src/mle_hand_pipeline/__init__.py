"""mle_hand_pipeline: 2D hand keypoints with the MLE loss of "MLE-Loss Driven Robust Hand Pose Estimation"
(Lou, Lin, Zhu, Chen; IEEE Access 2024)."""

import os

# GNU OpenMP threads spin at every barrier by default; when DataLoader workers or other jobs hold a
# core, each barrier then waits a whole time slice (2.6x slower training measured on 2 cores: the
# OpenMP section of docs/benchmarks.md). Must run before torch is imported; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
