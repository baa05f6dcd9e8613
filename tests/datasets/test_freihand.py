import json

import numpy as np
import pytest

from mle_hand_pipeline.datasets.freihand import read_freihand
from mle_hand_pipeline.datasets.records import BadSampleError, stack_column

RATIOS = {"train": 0.5, "test": 0.5}


def _read(root, on_bad_sample="raise", ratios=RATIOS):
    return read_freihand(
        root, split_ratios=ratios, seed=3, use_evaluation_set="auto", on_bad_sample=on_bad_sample
    )


def _edit_json(root, name, edit):
    path = root / name
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_real_samples_project_with_k_and_keep_versions_together(real_freihand):
    hands, rejections = _read(real_freihand)
    assert rejections.empty
    assert sorted(hands["image_id"]) == list(range(8))
    xyz = np.array(json.loads((real_freihand / "training_xyz.json").read_text()))
    camera = np.array(json.loads((real_freihand / "training_K.json").read_text()))
    keypoints = stack_column(hands["keypoints_source"])
    for row, points in zip(hands.itertuples(), keypoints, strict=True):
        assert row.sample_id == row.image_id % 2
        assert row.version == ("gs", "hom", "sample", "auto")[row.image_id // 2]
        for joint in range(21):  # independent projection, joint by joint
            u, v, w = camera[row.sample_id] @ xyz[row.sample_id][joint]
            np.testing.assert_allclose(points[joint], [u / w, v / w], atol=1e-9)
        assert (0 <= points).all() and (points < 224).all()
    # Two unique samples, ratios 1:1 -> one sample per split, each with all four versions.
    assert (hands.groupby("sample_id")["split"].nunique() == 1).all()
    assert sorted(hands.groupby("split")["image_id"].count()) == [4, 4]


def test_length_mismatch(real_freihand):
    _edit_json(real_freihand, "training_K.json", lambda d: d.pop())
    with pytest.raises(ValueError, match=r"training_xyz.json has 2 entries but training_K.json has 1"):
        _read(real_freihand, on_bad_sample="skip")


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        (
            "training_xyz.json",
            lambda d: d[1][3].__setitem__(0, float("nan")),
            r"training_xyz.json entry 1 holds NaN",
        ),
        ("training_xyz.json", lambda d: d[1].pop(), r"training_xyz.json entry 1 has shape \(20, 3\)"),
    ],
)
def test_bad_annotations(real_freihand, name, edit, message):
    _edit_json(real_freihand, name, edit)
    with pytest.raises(BadSampleError, match=message):
        _read(real_freihand)
    hands, rejections = _read(real_freihand, on_bad_sample="skip")
    assert set(hands["sample_id"]) == {0} and len(hands) == 4
    assert len(rejections) == 4 and (rejections["reason"] == "bad_annotation").all()


def test_infinite_intrinsics(real_freihand):
    _edit_json(real_freihand, "training_K.json", lambda d: d[1][0].__setitem__(0, float("inf")))
    assert "Infinity" in (real_freihand / "training_K.json").read_text()  # Python's JSON extension
    with pytest.raises(BadSampleError, match=r"training_K.json entry 1 holds NaN or infinite"):
        _read(real_freihand)


def test_missing_files(real_freihand, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"FreiHAND root not found"):
        _read(tmp_path / "nope")
    (real_freihand / "training" / "rgb" / "00000005.jpg").unlink()
    with pytest.raises(
        BadSampleError, match=r"00000005.jpg: image file missing \(sample 1, version sample\)"
    ):
        _read(real_freihand)
    hands, rejections = _read(real_freihand, on_bad_sample="skip")
    assert len(hands) == 7 and list(rejections["reason"]) == ["missing_image"]
    (real_freihand / "training_xyz.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"training_xyz.json"):
        _read(real_freihand)


def _set_entry(index, value):
    return lambda d: d.__setitem__(index, value)


def _set_element(index, row, column, value):
    return lambda d: d[index][row].__setitem__(column, value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set_entry(1, [[0.0] * 3] * 3), r"training_K.json entry 1 is a singular intrinsic matrix"),
        (_set_element(1, 0, 0, 0.0), r"training_K.json entry 1 is a singular intrinsic matrix"),
        (_set_element(1, 1, 1, 0.0), r"training_K.json entry 1 is a singular intrinsic matrix"),
        # An invertible K whose third row flips the depth sign: every joint lands behind the camera.
        (_set_element(1, 2, 2, -1.0), r"training_K.json entry 1 projects joint 0 to depth w = -[\d.]+ <= 0"),
    ],
)
def test_cameras_that_cannot_project_are_named_or_counted(real_freihand, edit, message):
    _edit_json(real_freihand, "training_K.json", edit)
    with pytest.raises(BadSampleError, match=message):
        _read(real_freihand)
    hands, rejections = _read(real_freihand, on_bad_sample="skip")
    assert set(hands["sample_id"]) == {0} and len(hands) == 4
    assert sorted(rejections["image_id"]) == [1, 3, 5, 7]  # the four versions of sample 1
    assert (rejections["reason"] == "bad_annotation").all()
    assert rejections["detail"].str.contains("training_K.json entry 1").all()
    keypoints = stack_column(hands["keypoints_source"])
    assert np.isfinite(keypoints).all() and (keypoints.max(axis=1) - keypoints.min(axis=1) > 10).all()
