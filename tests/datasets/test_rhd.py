import pickle

import numpy as np
import pytest

from mle_hand_pipeline.datasets.records import BadSampleError, stack_column
from mle_hand_pipeline.datasets.rhd import read_rhd
from mle_hand_pipeline.datasets.safe_pickle import UnsafePickleError, load_annotation_pickle
from mle_hand_pipeline.keypoints import FINGER_KEYPOINTS, RHD_TO_COMMON


def _read(root, on_bad_sample="raise", parts=("evaluation",)):
    return read_rhd(root, parts=list(parts), val_ratio=0.1, seed=0, on_bad_sample=on_bad_sample)


def _rewrite(root, edit):
    path = root / "evaluation" / "anno_evaluation.pickle"
    data = load_annotation_pickle(path)
    edit(data)
    path.write_bytes(pickle.dumps(data, protocol=4))


def test_real_samples_two_hands_per_image_in_common_order(real_rhd):
    hands, rejections = _read(real_rhd)
    assert rejections.empty
    assert len(hands) == 6 and (hands["split"] == "test").all()
    raw = load_annotation_pickle(real_rhd / "evaluation" / "anno_evaluation.pickle")
    for row in hands.itertuples():
        offset = 0 if row.side == "left" else 21
        expected = raw[row.sample_id]["uv_vis"][RHD_TO_COMMON + offset]
        np.testing.assert_allclose(np.array(row.keypoints_source), expected[:, :2], atol=1e-4)
        np.testing.assert_array_equal(np.array(row.visible), expected[:, 2] == 1)
    # Anatomy check on the labelled hands: in the common order each finger runs from the palm
    # outwards, so (even in a fist) the finger bases sit closer to the wrist than the tips.
    labelled = hands[[all(v) for v in hands["visible"]]]
    assert len(labelled) == 3
    for keypoints in stack_column(labelled["keypoints_source"]):
        bases, tips = zip(*[(chain[0], chain[-1]) for chain in FINGER_KEYPOINTS.values()], strict=True)
        distance = np.linalg.norm(keypoints - keypoints[0], axis=1)
        assert distance[list(bases)].sum() < 0.8 * distance[list(tips)].sum()


def test_training_split_assigns_both_hands_of_a_sample_together(real_rhd):
    (real_rhd / "evaluation").rename(real_rhd / "training")
    (real_rhd / "training" / "anno_evaluation.pickle").rename(real_rhd / "training" / "anno_training.pickle")
    hands, _ = read_rhd(real_rhd, parts=["training"], val_ratio=0.34, seed=1, on_bad_sample="raise")
    assert set(hands["split"]) == {"train", "val"}
    assert (hands.groupby("sample_id")["split"].nunique() == 1).all()


def test_missing_root_split_and_pickle(real_rhd, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"RHD root not found: .*nowhere"):
        _read(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"RHD split folder not found: .*training"):
        _read(real_rhd, parts=("training", "evaluation"))
    (real_rhd / "evaluation" / "anno_evaluation.pickle").unlink()
    with pytest.raises(FileNotFoundError, match=r"anno_evaluation.pickle"):
        _read(real_rhd)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d[1].__setitem__("uv_vis", np.ones((21, 3), np.float32)),
            r"sample 1 'uv_vis' has shape \(21, 3\)",
        ),
        (lambda d: d[1]["uv_vis"].__setitem__((5, 0), np.nan), r"sample 1 'uv_vis' holds NaN or infinite"),
        (lambda d: d[1]["uv_vis"].__setitem__((5, 1), np.inf), r"sample 1 'uv_vis' holds NaN or infinite"),
        (lambda d: d[1]["xyz"].__setitem__((0, 2), np.nan), r"sample 1 'xyz' holds NaN"),
        (lambda d: d[1].__setitem__("K", np.eye(4)), r"sample 1 'K' has shape \(4, 4\)"),
        (
            lambda d: d[1]["uv_vis"].__setitem__((0, 2), 0.5),
            r"sample 1 'uv_vis': visibility flags must be 0 or 1",
        ),
        (
            lambda d: d[1].pop("uv_vis"),
            r"anno_evaluation.pickle sample 1: missing key 'uv_vis' \(keys present: \['K', 'xyz'\]\)",
        ),
        (lambda d: d.__setitem__(1, [1, 2]), r"sample 1: expected a dict with key 'uv_vis', got list"),
    ],
)
def test_bad_annotations_raise_or_are_counted(real_rhd, edit, message):
    _rewrite(real_rhd, edit)
    with pytest.raises(BadSampleError, match=message):
        _read(real_rhd)
    hands, rejections = _read(real_rhd, on_bad_sample="skip")
    assert sorted(hands["sample_id"].unique()) == [0, 2]
    assert len(rejections) == 2 and set(rejections["side"]) == {"left", "right"}
    assert (rejections["reason"] == "bad_annotation").all()
    assert rejections["detail"].str.contains("sample 1").all()


def test_missing_image_is_named(real_rhd):
    (real_rhd / "evaluation" / "color" / "00002.png").unlink()
    with pytest.raises(BadSampleError, match=r"00002.png: image file missing"):
        _read(real_rhd)
    hands, rejections = _read(real_rhd, on_bad_sample="skip")
    assert len(hands) == 4 and (rejections["reason"] == "missing_image").all() and len(rejections) == 2


def test_malicious_pickle_is_refused_without_running(real_rhd, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    path = real_rhd / "evaluation" / "anno_evaluation.pickle"
    path.write_bytes(pickle.dumps({0: {"uv_vis": Exploit()}}, protocol=4))
    with pytest.raises(UnsafePickleError, match=r"anno_evaluation.pickle: refusing to unpickle"):
        _read(real_rhd, on_bad_sample="skip")
    assert not marker.exists()


def test_deeply_nested_pickle_is_an_unreadable_pickle_not_a_recursion_error(real_rhd):
    # Protocol-2 opcodes written directly (cheap: no million-deep Python object is pickled):
    # {0: [[[...]]]} with the list nested a million levels, EMPTY_LIST then APPEND per level.
    depth = 1_000_000
    (real_rhd / "evaluation" / "anno_evaluation.pickle").write_bytes(
        b"\x80\x02}K\x00" + b"]" * depth + b"a" * (depth - 1) + b"s."
    )
    with pytest.raises(
        ValueError, match=r"anno_evaluation.pickle: not a readable pickle \(containers nested"
    ):
        _read(real_rhd, on_bad_sample="skip")
