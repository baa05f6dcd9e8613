"""FreiHAND's evaluation set (FreiHAND_pub_v2_eval unpacked into the root) becomes the test split:
one image per sample, labels from evaluation_*.json; the training samples then split into train and
val only. Without it (or with use_evaluation_set: false), test is drawn from the training samples."""

import json
import shutil

import numpy as np
import pytest

from mle_hand_pipeline.datasets.freihand import read_freihand
from mle_hand_pipeline.datasets.records import stack_column

RATIOS = {"train": 0.5, "val": 0.25, "test": 0.25}


@pytest.fixture
def with_evaluation(real_freihand):
    """The real samples plus an evaluation set: the 2 samples' first version, their labels shifted."""
    (real_freihand / "evaluation/rgb").mkdir(parents=True)
    for image_id in (0, 1):
        shutil.copy(
            real_freihand / f"training/rgb/{image_id:08d}.jpg",
            real_freihand / f"evaluation/rgb/{image_id:08d}.jpg",
        )
    xyz = json.loads((real_freihand / "training_xyz.json").read_text())
    (real_freihand / "evaluation_xyz.json").write_text(
        json.dumps([[[x * 1.01, y, z] for x, y, z in s] for s in xyz])
    )
    shutil.copy(real_freihand / "training_K.json", real_freihand / "evaluation_K.json")
    return real_freihand


def _read(root, use_evaluation_set="auto", ratios=RATIOS):
    return read_freihand(
        root, split_ratios=ratios, seed=0, use_evaluation_set=use_evaluation_set, on_bad_sample="raise"
    )


def test_the_evaluation_set_is_the_test_split(with_evaluation):
    hands, rejections = _read(with_evaluation)
    assert rejections.empty
    test = hands[hands["split"] == "test"]
    assert len(test) == 2 and (test["version"] == "gs").all()  # one image per evaluation sample
    assert all("evaluation" in path for path in test["source_image"])
    training = hands[hands["split"] != "test"]
    assert len(training) == 8 and set(training["split"]) <= {"train", "val"}
    assert (training.groupby("sample_id")["split"].nunique() == 1).all()  # 4 versions together
    # the evaluation labels, not the training ones: x scaled by 1.01 in camera space
    xyz = np.array(json.loads((with_evaluation / "evaluation_xyz.json").read_text()))
    camera = np.array(json.loads((with_evaluation / "evaluation_K.json").read_text()))
    for row, points in zip(test.itertuples(), stack_column(test["keypoints_source"]), strict=True):
        projected = (camera[row.sample_id] @ xyz[row.sample_id].T).T
        np.testing.assert_allclose(points, projected[:, :2] / projected[:, 2:], atol=1e-9)


def test_without_it_test_is_drawn_from_the_training_samples(with_evaluation):
    hands, _ = _read(with_evaluation, use_evaluation_set=False)
    assert len(hands) == 8 and not any("evaluation" in path for path in hands["source_image"])
    with pytest.raises(
        FileNotFoundError, match=r"use_evaluation_set is true but .* lacks evaluation_xyz.json"
    ):
        shutil.rmtree(with_evaluation / "evaluation")
        _read(with_evaluation, use_evaluation_set=True)
