"""Catalog dataset types of the project: published checkpoints and the crop store."""

import os

from kedro.io import Version

from mle_hand_pipeline.datasets.crop_store import CropStore
from mle_hand_pipeline.datasets.records import filter_visible
from mle_hand_pipeline.datasets.rhd import read_rhd
from mle_hand_pipeline.io import CheckpointDataset, CropStoreDataset
from mle_hand_pipeline.pipelines.preprocess.nodes import crop_table, make_crops


def test_a_published_checkpoint_is_a_versioned_link_and_each_process_loads_its_own(tmp_path):
    source = tmp_path / "run" / "best.pt"
    source.parent.mkdir()
    source.write_bytes(b"weights")
    first = CheckpointDataset(str(tmp_path / "model.pt"), Version(None, "2026-01-01T00.00.00.000Z"))
    later = CheckpointDataset(str(tmp_path / "model.pt"), Version(None, "2026-01-02T00.00.00.000Z"))
    later.save(source)
    first.save(source)  # a concurrent run that saves last but started first
    assert first.load() == tmp_path / "model.pt/2026-01-01T00.00.00.000Z/model.pt"
    assert later.load() == tmp_path / "model.pt/2026-01-02T00.00.00.000Z/model.pt"
    assert os.path.samefile(first.load(), source) and first.load().read_bytes() == b"weights"
    fresh = CheckpointDataset(str(tmp_path / "model.pt"), Version(None, None))  # e.g. --from-nodes
    assert fresh.exists() and fresh.load() == later.load()  # the newest version
    assert not CheckpointDataset(str(tmp_path / "other.pt"), Version(None, None)).exists()


PARAMS = {"min_visible": 10, "workers": 1, "on_bad_sample": "raise", "crop": {"size": 64}}


def test_crop_store_dataset_saves_a_plan_and_loads_the_store(real_rhd, tmp_path):
    hands, _ = read_rhd(real_rhd, ["evaluation"], val_ratio=0.1, seed=0, on_bad_sample="raise")
    kept, _ = filter_visible(hands, PARAMS["min_visible"])
    dataset = CropStoreDataset(str(tmp_path / "rhd_crops"))
    assert not dataset.exists()
    dataset.save(make_crops(kept, str(real_rhd), PARAMS))
    assert dataset.exists()
    store = dataset.load()
    assert isinstance(store, CropStore)
    assert os.fspath(store) == str(store) == str(tmp_path / "rhd_crops")  # usable as the folder's path
    table, rejections = crop_table(store)
    assert len(table) == 3 and rejections.empty
    for path in table["crop_path"]:
        assert (tmp_path / "rhd_crops" / path).is_file()
