import hashlib

import numpy as np
import pandas as pd
import pytest

from mle_hand_pipeline.datasets.cropping import CropSettings, crop_hands
from mle_hand_pipeline.datasets.records import BadSampleError, filter_visible, stack_column
from mle_hand_pipeline.datasets.rhd import read_rhd
from mle_hand_pipeline.pipelines.preprocess.nodes import summarise

PARAMS = {"min_visible": 10, "on_bad_sample": "raise", "crop": {}}


def _rhd(root, on_bad_sample="raise"):
    hands, rejections = read_rhd(root, ["evaluation"], val_ratio=0.1, seed=0, on_bad_sample=on_bad_sample)
    kept, dropped = filter_visible(hands, PARAMS["min_visible"])
    return kept, dropped, rejections


def _digest(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.*"))
    }


def test_real_rhd_keeps_exactly_the_labelled_hand_per_image(real_rhd, tmp_path):
    kept, dropped, _ = _rhd(real_rhd)
    assert list(zip(kept["sample_id"], kept["side"], strict=True)) == [(0, "left"), (1, "left"), (2, "right")]
    assert len(dropped) == 3 and (dropped["reason"] == "too_few_visible").all()
    table, failures = crop_hands(
        kept, real_rhd, tmp_path / "crops", CropSettings(), workers=1, on_bad_sample="raise"
    )
    assert failures.empty and len(table) == 3
    assert list(table["mirrored"]) == [True, True, False]  # left hands are mirrored into right ones
    for row in table.itertuples():
        crop = tmp_path / "crops" / row.crop_path
        assert crop.is_file()
        points = np.array(row.keypoints_crop)
        assert (points > 0).all() and (points < row.crop_size).all()
        # The hand box spans 1 / scale of the crop along its longer side.
        assert row.hand_size == pytest.approx(row.crop_size / 1.5, rel=1e-6)


def test_crops_are_reproducible_and_independent_of_workers(real_rhd, real_freihand, tmp_path):
    kept, _, _ = _rhd(real_rhd)
    first, _ = crop_hands(
        kept, real_rhd, tmp_path / "a", CropSettings(size=96), workers=1, on_bad_sample="raise"
    )
    second, _ = crop_hands(
        kept, real_rhd, tmp_path / "b", CropSettings(size=96), workers=2, on_bad_sample="raise"
    )
    pd.testing.assert_frame_equal(first, second)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != {}


def test_truncated_image_is_named_or_counted(real_rhd, tmp_path):
    image = real_rhd / "evaluation" / "color" / "00001.png"
    image.write_bytes(image.read_bytes()[:2000])
    kept, _, _ = _rhd(real_rhd)
    with pytest.raises(BadSampleError, match=r"00001.png: cannot read image"):
        crop_hands(kept, real_rhd, tmp_path / "crops", CropSettings(), workers=2, on_bad_sample="raise")
    table, failures = crop_hands(
        kept, real_rhd, tmp_path / "crops", CropSettings(), workers=2, on_bad_sample="skip"
    )
    assert list(table["sample_id"]) == [0, 2]
    assert list(failures["reason"]) == ["unreadable_image"] and list(failures["sample_id"]) == [1]


def test_not_an_image(real_rhd, tmp_path):
    (real_rhd / "evaluation" / "color" / "00000.png").write_text("not a png")
    kept, _, _ = _rhd(real_rhd)
    with pytest.raises(BadSampleError, match=r"00000.png: cannot read image"):
        crop_hands(kept, real_rhd, tmp_path / "crops", CropSettings(), workers=1, on_bad_sample="raise")


def test_summary_counts_every_candidate(real_rhd, tmp_path):
    (real_rhd / "evaluation" / "color" / "00002.png").unlink()
    kept, dropped, read_rejections = _rhd(real_rhd, on_bad_sample="skip")
    table, crop_rejections = crop_hands(kept, real_rhd, tmp_path / "c", CropSettings(), 1, "skip")
    summary, rejections = summarise(
        table, read_rejections, dropped, crop_rejections, {**PARAMS, "on_bad_sample": "skip"}
    )
    assert summary["kept"] == {"test": 2}
    assert summary["dropped"] == {"missing_image": {"test": 2}, "too_few_visible": {"test": 2}}
    assert summary["candidates_total"] == 6 == summary["kept_total"] + summary["dropped_total"]
    assert len(rejections) == 4


def test_visible_column_round_trips_through_parquet(real_rhd, tmp_path):
    kept, _, _ = _rhd(real_rhd)
    table, _ = crop_hands(kept, real_rhd, tmp_path / "c", CropSettings(), 1, "raise")
    table.to_parquet(tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")
    np.testing.assert_array_equal(stack_column(back["keypoints_crop"]), stack_column(table["keypoints_crop"]))
    assert stack_column(back["visible"]).dtype == bool
