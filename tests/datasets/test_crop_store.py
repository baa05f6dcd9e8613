"""The crop store: all-or-nothing writes, arrays that hold the decoded crop files, stale-table checks."""

import hashlib
import re

import pytest
import torch
from torch.utils.data import default_collate

from mle_hand_pipeline.datasets.crop_store import CropStore, StaleCropStoreError
from mle_hand_pipeline.datasets.cropping import CropSettings, crop_hands
from mle_hand_pipeline.datasets.records import BadSampleError, filter_visible
from mle_hand_pipeline.datasets.rhd import read_rhd
from mle_hand_pipeline.training.data import HandCrops


def _kept(root, on_bad_sample="raise"):
    hands, _ = read_rhd(root, ["evaluation"], val_ratio=0.1, seed=0, on_bad_sample=on_bad_sample)
    return filter_visible(hands, 10)[0]


def _digest(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _batch(dataset):
    return default_collate([dataset[i] for i in range(len(dataset))])


def test_a_run_failing_late_leaves_the_previous_store_byte_identical(real_rhd, tmp_path):
    crops = tmp_path / "crops"
    kept = _kept(real_rhd)
    crop_hands(kept, real_rhd, crops, CropSettings(size=96), workers=1, on_bad_sample="raise")
    before = _digest(crops)
    assert {"manifest.json", "hands.parquet", "arrays/test.npy"} <= set(before)
    last = real_rhd / "evaluation" / "color" / "00002.png"  # the last image: the others are cropped first
    last.write_bytes(last.read_bytes()[:2000])
    with pytest.raises(BadSampleError, match=r"00002\.png"):
        # Other settings too, so an in-place write would have changed every earlier crop.
        crop_hands(kept, real_rhd, crops, CropSettings(size=64), workers=1, on_bad_sample="raise")
    assert _digest(crops) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RHD_published_v2", "crops"]  # no staging left


def test_arrays_hold_the_decoded_crop_files(real_rhd, tmp_path):
    table, _ = crop_hands(_kept(real_rhd), real_rhd, tmp_path / "c", CropSettings(), 1, "raise")
    store = CropStore(tmp_path / "c")
    from_array = _batch(HandCrops(table, store))
    from_jpeg = _batch(HandCrops(table, store, decode_jpeg=True))
    assert from_array["image"].shape == (3, 3, 256, 256) and from_array["image"].dtype == torch.uint8
    for key in from_array:
        assert torch.equal(from_array[key], from_jpeg[key]), key


def test_rejected_hands_leave_no_row_in_the_arrays(real_rhd, tmp_path):
    middle = real_rhd / "evaluation" / "color" / "00001.png"
    middle.write_bytes(middle.read_bytes()[:2000])
    table, rejections = crop_hands(
        _kept(real_rhd), real_rhd, tmp_path / "c", CropSettings(size=64), 2, "skip"
    )
    assert list(table["sample_id"]) == [0, 2] and list(rejections["sample_id"]) == [1]
    store = CropStore(tmp_path / "c")
    assert store.array("test").shape == (2, 64, 64, 3)
    assert torch.equal(
        _batch(HandCrops(table, store))["image"], _batch(HandCrops(table, store, True))["image"]
    )
    assert list(store.rejections["sample_id"]) == [1]


def test_a_table_from_another_run_is_a_clear_error(real_rhd, tmp_path):
    table, _ = crop_hands(_kept(real_rhd), real_rhd, tmp_path / "c", CropSettings(size=64), 1, "raise")
    store = CropStore(tmp_path / "c")
    # Subsets in any order and other labels (label noise) read the right rows.
    subset = table.iloc[[2, 0]].reset_index(drop=True)
    subset["keypoints_crop"] = [[[1.0, 2.0]] * 21] * 2
    assert store.rows(subset) == ("test", pytest.approx([2, 0]))
    assert torch.equal(HandCrops(subset, store)[0]["image"], HandCrops(table, store)[2]["image"])
    moved = table.copy()
    moved.loc[1, "box_x0"] += 0.5
    with pytest.raises(StaleCropStoreError, match=r"00000001_left.jpg was made from another box.*re-run"):
        HandCrops(moved, store)
    other = table.assign(crop_path=table["crop_path"].str.replace("test_64", "test_96"))
    with pytest.raises(StaleCropStoreError, match="it has no crop test_96"):
        HandCrops(other, store)


def test_a_missing_store_says_what_to_run(tmp_path):
    (tmp_path / "crops.old-123").mkdir()
    with pytest.raises(
        FileNotFoundError, match=r"no crop store at .*crops \(found crops.old-123.*preprocess"
    ):
        CropStore(tmp_path / "crops")


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path):
    path.write_bytes(b"")


def _zero_all(path):
    path.write_bytes(bytes(path.stat().st_size))


def _zero_pixels(path):
    import numpy as np

    pixels = np.load(path, mmap_mode="r+")
    pixels[:] = 0  # header kept: a valid array of black crops
    pixels.flush()


@pytest.mark.parametrize(
    ("damage", "what"),
    [
        (_truncate, r"truncated: \d+ bytes, the manifest says \d+"),
        (_empty, r"the file is empty \(0 bytes\)"),
        (_zero_all, r"not a \.npy array: its header is unreadable \(starts with zeros"),
        (_zero_pixels, r"its pixels changed since preprocessing \(sampled sha256 differs\)"),
    ],
    ids=["truncated", "empty", "zero-filled", "pixels-zeroed"],
)
def test_a_damaged_array_stops_before_the_first_batch_naming_its_file(real_rhd, tmp_path, damage, what):
    """Issue 18, rows 1-4: each damage is one line naming the file and saying to re-run preprocessing,
    raised when the dataset is built (before any batch), not a numpy error at the first batch."""
    from mle_hand_pipeline.datasets.crop_store import DamagedCropStoreError, array_path

    crops = tmp_path / "rhd_crops"
    table, _ = crop_hands(_kept(real_rhd), real_rhd, crops, CropSettings(size=64), 1, "raise")
    HandCrops(table, CropStore(crops))  # intact: no error
    damage(array_path(crops, "test"))
    with pytest.raises(DamagedCropStoreError) as raised:
        HandCrops(table, CropStore(crops))
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{array_path(crops, 'test')}: ")
    assert re.search(what, message), message
    assert message.endswith("the crop store is damaged: re-run kedro run --pipelines=rhd_preprocess")


def test_the_manifest_records_each_arrays_checksum_and_a_full_check_reads_every_byte(
    real_rhd, tmp_path, monkeypatch
):
    import numpy as np

    import mle_hand_pipeline.datasets.crop_store as crop_store
    from mle_hand_pipeline.datasets.crop_store import DamagedCropStoreError, array_path

    # Sampled: the first and last KiB only (recorded in the manifest), so a middle row is not sampled.
    monkeypatch.setattr(crop_store, "SAMPLE_BLOCKS", 2)
    monkeypatch.setattr(crop_store, "SAMPLE_BLOCK_BYTES", 1024)
    crops = tmp_path / "c"
    crop_hands(_kept(real_rhd), real_rhd, crops, CropSettings(size=64), 1, "raise")
    monkeypatch.undo()
    path = array_path(crops, "test")
    record = CropStore(crops).manifest["splits"]["test"]["array"]
    assert record["shape"] == [3, 64, 64, 3] and record["dtype"] == "uint8"
    assert record["bytes"] == path.stat().st_size
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (record["sample_blocks"], record["sample_block_bytes"]) == (2, 1024)
    # One changed pixel between the sampled blocks: the quick check passes, the full one does not.
    pixels = np.load(path, mmap_mode="r+")
    pixels[1, 40, 40, 0] ^= 0xFF
    pixels.flush()
    del pixels
    CropStore(crops).verify("test")
    with pytest.raises(DamagedCropStoreError, match=r"test\.npy: its pixels changed.*\(sha256 differs\)"):
        CropStore(crops).verify("test", full=True)


def test_one_flipped_byte_in_a_crop_stops_the_loader_at_that_crop_naming_it(real_rhd, tmp_path, monkeypatch):
    """Issue 38: a byte the quick check does not sample (the middle of a crop) is caught when the crop is
    read, by item and by the whole-split copy a GPU training makes, naming the array and the crop."""
    import numpy as np

    import mle_hand_pipeline.datasets.crop_store as crop_store
    from mle_hand_pipeline.datasets.crop_store import DamagedCropStoreError, array_path, crc32_path

    monkeypatch.setattr(crop_store, "SAMPLE_BLOCKS", 2)
    monkeypatch.setattr(crop_store, "SAMPLE_BLOCK_BYTES", 1024)
    crops = tmp_path / "rhd_crops"
    table, _ = crop_hands(_kept(real_rhd), real_rhd, crops, CropSettings(size=64), 1, "raise")
    monkeypatch.undo()
    test = table[table["split"] == "test"].reset_index(drop=True)
    checksums = np.load(crc32_path(array_path(crops, "test")))
    assert checksums.shape == (len(test),) and checksums.dtype == np.uint32
    _batch(HandCrops(test, CropStore(crops)))  # intact: every crop passes

    pixels = np.load(array_path(crops, "test"), mmap_mode="r+")
    pixels[1, 30, 31, 2] ^= 0x01
    pixels.flush()
    del pixels
    dataset = HandCrops(test, CropStore(crops))  # the sampled check misses it
    dataset[0]  # other crops still read
    expected = rf"test\.npy: crop 1 \({re.escape(test['crop_path'][1])}\) changed since preprocessing"
    with pytest.raises(DamagedCropStoreError, match=expected):
        dataset[1]
    with pytest.raises(DamagedCropStoreError, match=expected):
        dataset.images(torch.device("cpu"))


def test_a_replaced_checksum_file_is_refused(real_rhd, tmp_path):
    import numpy as np

    from mle_hand_pipeline.datasets.crop_store import DamagedCropStoreError, array_path, crc32_path

    crops = tmp_path / "rhd_crops"
    table, _ = crop_hands(_kept(real_rhd), real_rhd, crops, CropSettings(size=64), 1, "raise")
    path = crc32_path(array_path(crops, "test"))
    np.save(path, np.zeros(len(np.load(path)), dtype=np.uint32))
    dataset = HandCrops(table[table["split"] == "test"], CropStore(crops))
    with pytest.raises(DamagedCropStoreError, match=r"test\.crc32\.npy: it changed since preprocessing"):
        dataset[0]


def test_a_store_without_per_crop_checksums_loads_with_a_warning(real_rhd, tmp_path, caplog):
    import json

    from mle_hand_pipeline.datasets.crop_store import MANIFEST

    crops = tmp_path / "rhd_crops"
    table, _ = crop_hands(_kept(real_rhd), real_rhd, crops, CropSettings(size=64), 1, "raise")
    manifest = json.loads((crops / MANIFEST).read_text())
    for entry in manifest["splits"].values():
        del entry["array"]["crc32_sha256"]
    (crops / MANIFEST).write_text(json.dumps(manifest))
    _batch(HandCrops(table[table["split"] == "test"], CropStore(crops)))
    assert "predates per-crop checksums" in caplog.text
