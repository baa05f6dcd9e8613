import pytest

from mle_hand_pipeline.datasets.cropping import CropSettings, crop_hands
from mle_hand_pipeline.datasets.records import BadSampleError, filter_visible, rejections_frame
from mle_hand_pipeline.datasets.rhd import read_rhd
from mle_hand_pipeline.pipelines.preprocess.nodes import summarise


def _collapse_hand(hands, index):
    """Put every keypoint of one hand on a single pixel, as a corrupt label would."""
    hands = hands.copy()
    hands.at[index, "keypoints_source"] = [[100.0, 120.0]] * 21
    return hands


def test_zero_size_hand_never_reaches_the_table(real_rhd, tmp_path):
    hands, _ = read_rhd(real_rhd, ["evaluation"], val_ratio=0.1, seed=0, on_bad_sample="raise")
    kept, dropped = filter_visible(hands, 10)
    kept = _collapse_hand(kept, 1)  # sample 1, left hand
    with pytest.raises(BadSampleError, match=r"00001.png: left hand of sample 1 has a zero-size box"):
        crop_hands(
            kept, real_rhd, tmp_path / "crops", CropSettings(size=64), workers=1, on_bad_sample="raise"
        )

    table, rejections = crop_hands(kept, real_rhd, tmp_path / "crops", CropSettings(size=64), 1, "skip")
    assert list(table["sample_id"]) == [0, 2] and (table["hand_size"] > 0).all()
    assert list(rejections["reason"]) == ["zero_size_hand"]
    assert "visible keypoints all lie at (100.00, 120.00)" in rejections["detail"][0]
    assert not (tmp_path / "crops" / "test_64" / "00000001_left.jpg").exists()
    summary, _ = summarise(
        table,
        rejections_frame([]),
        dropped,
        rejections,
        {"min_visible": 10, "on_bad_sample": "skip", "crop": {}},
    )
    assert summary["dropped"]["zero_size_hand"] == {"test": 1}
    assert summary["candidates_total"] == len(hands)


def test_a_single_visible_keypoint_is_a_zero_size_hand(real_rhd, tmp_path):
    hands, _ = read_rhd(real_rhd, ["evaluation"], val_ratio=0.1, seed=0, on_bad_sample="raise")
    kept, _ = filter_visible(hands, 1)
    one = kept.iloc[:1].copy()
    one.at[0, "visible"] = [True] + [False] * 20
    table, rejections = crop_hands(one, real_rhd, tmp_path / "crops", CropSettings(size=64), 1, "skip")
    assert table.empty and list(rejections["reason"]) == ["zero_size_hand"]
