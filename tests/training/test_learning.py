"""The real loop (crop store loader, augmentation path, engine) learns: on a tiny fixed set of crops,
the trained model's error is well below the untrained one's."""

import pytest
import torch

from mle_hand_pipeline.training.augment import AugmentSettings
from mle_hand_pipeline.training.checkpoint import ModelSpec
from mle_hand_pipeline.training.data import HandCrops
from mle_hand_pipeline.training.engine import TrainConfig, fit
from mle_hand_pipeline.training.inference import score_crops

# The identity warp: the set stays fixed, so the test measures fitting, not generalisation.
NO_AUGMENT = AugmentSettings(
    rotation=0.0, rotation_prob=0.0, scale=(1.0, 1.0), shift=0.0, flip_prob=0.0,
    brightness=0.0, contrast=0.0, saturation=0.0,
)  # fmt: skip


@pytest.mark.slow
def test_training_brings_the_error_well_below_the_untrained_models(tiny_rhd, tmp_path):
    hands = tiny_rhd["hands"]
    fixed = hands[hands["split"] == "train"].head(16).reset_index(drop=True)
    # The CPU demo's stride-8 backbone: the whole ResNet-18 (2x2 features at 64 px) fit these 16 crops
    # too slowly to clear the bar on every kind of machine (NME 0.329 after 60 steps on an AMD EPYC)
    spec = ModelSpec(
        method="integral", backbone="resnet18", backbone_stride=8, stages=1, input_size=64, head_channels=16
    )
    config = TrainConfig(
        epochs=30, batch_size=8, lr=3e-3, lr_milestones=(), seed=0, devices="cpu", num_workers=0,
        eval_batch_size=16, augment=NO_AUGMENT,
    )  # fmt: skip
    torch.manual_seed(0)
    crops = HandCrops(fixed, tiny_rhd["crops"])
    untrained = score_crops(spec.build_model().eval(), crops, 64, torch.device("cpu"))
    result = fit(spec, config, fixed, fixed, tiny_rhd["crops"], tmp_path)
    history = result.history
    # Measured with the whole ResNet-18: untrained NME 0.356; after 60 steps 0.278 (lr 3e-3, Intel Xeon)
    # but 0.329 on an AMD EPYC, where the stride-8 backbone clears 0.85 x untrained (2026-12-02).
    assert history["val_nme"].iloc[-1] < 0.85 * untrained["nme"]
    assert history["train_loss"].iloc[-1] < 0.85 * history["train_loss"].iloc[0]
