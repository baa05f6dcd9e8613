"""The training-run library: label noise reaches the training labels only."""

import re

import numpy as np
import pytest
from helpers import TINY_MODEL_PARAMS, TINY_TRAIN_PARAMS

from mle_hand_pipeline.datasets.records import stack_column
from mle_hand_pipeline.training import runs

MODEL = TINY_MODEL_PARAMS
TRAIN = TINY_TRAIN_PARAMS


def test_label_noise_reaches_the_training_labels_only(tiny_rhd, tmp_path, monkeypatch):
    seen = {}

    def fake_fit(spec, config, train_table, val_table, crops_dir, checkpoint_dir, on_epoch_end):
        seen.update(train=train_table, val=val_table, config=config)
        raise RuntimeError("stop here")

    monkeypatch.setattr(runs, "fit", fake_fit)
    noise = {"fraction": 0.5, "jitter_px": 3.0, "outlier_fraction": 0.1, "seed": 1}
    with pytest.raises(RuntimeError, match="stop here"):
        runs.train_method(
            tiny_rhd["hands"],
            tiny_rhd["crops"],
            tmp_path,
            {**MODEL, "method": "mle"},
            {**TRAIN, "label_noise": noise},
        )
    hands = tiny_rhd["hands"]
    clean_train = stack_column(hands.query("split == 'train'")["keypoints_crop"])
    moved = np.linalg.norm(stack_column(seen["train"]["keypoints_crop"]) - clean_train, axis=-1)
    visible = stack_column(hands.query("split == 'train'")["visible"]).astype(bool)
    assert (moved > 0).sum() == round(0.5 * visible.sum()) + round(0.1 * visible.sum())
    np.testing.assert_array_equal(
        stack_column(seen["val"]["keypoints_crop"]),
        stack_column(hands.query("split == 'val'")["keypoints_crop"]),
    )
    assert not hasattr(seen["config"], "label_noise")  # applied to the labels, not passed to fit


@pytest.mark.parametrize("missing", ["train", "val", "test"])
def test_the_train_node_refuses_a_table_without_a_split_before_training(
    tiny_rhd, tmp_path, monkeypatch, missing
):
    from mle_hand_pipeline.pipelines.train import nodes

    def no_training(*args, **kwargs):
        raise AssertionError("trained")

    monkeypatch.setattr(nodes.tracking, "train_tracked", no_training)
    hands = tiny_rhd["hands"]
    kept = hands[hands["split"] != missing]
    counts = kept["split"].value_counts()
    sizes = ", ".join(f"{name} {counts[name]}" for name in sorted(counts.index))
    expected = (
        f"the rhd hand table has no '{missing}' crops, which this run needs: {len(kept)} crops of "
        f"{kept['sample_id'].nunique()} samples (per split: {sizes})"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        nodes.train_model(kept, tiny_rhd["crops"], tmp_path, {}, {**MODEL, "method": "mle"}, TRAIN)
    assert not list(tmp_path.iterdir())
    # the evaluation's own check gives the same message
    with pytest.raises(ValueError, match=re.escape(expected)):
        runs.split(kept, missing)
