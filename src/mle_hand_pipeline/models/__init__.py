"""Plain-PyTorch hand pose models (no Kedro): the paper's sequential heatmap network and baselines.

Coordinates are normalised crop coordinates ``u = x / S - 0.5``; every model returns a
:class:`PoseOutput`. Build one by method name, with its loss, in :mod:`mle_hand_pipeline.methods`.
"""

from .backbone import (
    BACKBONES,
    OUTPUT_STRIDES,
    ResNetBackbone,
    load_imagenet_state_dict,
    weights_checkpoint_path,
)
from .cpm import CPM, CPMFeatures
from .flow import RealNVP
from .heads import DEFAULT_SIGMA_EPS, HeatmapHead, PoseStage, VarianceHead
from .integral import argmax_decode, cell_centres, local_soft_argmax, soft_argmax
from .outputs import PoseOutput
from .pose_net import InferenceWrapper, SequentialHeatmapNet
from .rle_net import RLENet

__all__ = [
    "BACKBONES",
    "CPM",
    "DEFAULT_SIGMA_EPS",
    "OUTPUT_STRIDES",
    "CPMFeatures",
    "HeatmapHead",
    "InferenceWrapper",
    "PoseOutput",
    "PoseStage",
    "RLENet",
    "RealNVP",
    "ResNetBackbone",
    "SequentialHeatmapNet",
    "VarianceHead",
    "argmax_decode",
    "cell_centres",
    "load_imagenet_state_dict",
    "local_soft_argmax",
    "soft_argmax",
    "weights_checkpoint_path",
]
