"""Catalog dataset types: the crop store dataset writes a crop plan all or nothing and loads the store."""

import os

from mle_hand_pipeline.datasets.crop_store import CropStore
from mle_hand_pipeline.datasets.rhd import read_rhd
from mle_hand_pipeline.io import CropStoreDataset
from mle_hand_pipeline.pipelines.preprocess.nodes import crop_table, filter_visible, make_crops

PARAMS = {"min_visible": 10, "workers": 1, "on_bad_sample": "raise", "crop": {"size": 64}}


def test_crop_store_dataset_saves_a_plan_and_loads_the_store(real_rhd, tmp_path):
    hands, _ = read_rhd(real_rhd, ["evaluation"], val_ratio=0.1, seed=0, on_bad_sample="raise")
    kept, _ = filter_visible(hands, PARAMS)
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
