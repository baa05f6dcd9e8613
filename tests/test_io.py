"""Catalog dataset types of the project: published checkpoints and the crop store."""

import os

import pytest
from kedro.io import DatasetError, Version

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


@pytest.mark.parametrize("hard_links", [True, False])
def test_two_runs_with_one_save_version_each_publish_and_load_their_own(tmp_path, monkeypatch, hard_links):
    # Kedro's save version is the session's start, to the millisecond: a grid's two cells can share it
    version = Version(None, "2026-01-01T00.00.00.000Z")
    other_run, this_run = tmp_path / "a.pt", tmp_path / "b.pt"
    other_run.write_bytes(b"other run's weights")
    this_run.write_bytes(b"this run's weights")
    CheckpointDataset(str(tmp_path / "model.pt"), version).save(other_run)
    if not hard_links:  # e.g. a file system without them: the name is claimed, then the copy moved in

        def no_links(*args):
            raise PermissionError("hard links not supported")

        monkeypatch.setattr(os, "link", no_links)
    mine = CheckpointDataset(str(tmp_path / "model.pt"), version)
    mine.save(this_run)
    taken = tmp_path / "model.pt/2026-01-01T00.00.00.000Z/model.pt"
    assert taken.read_bytes() == b"other run's weights"  # not overwritten
    assert mine.load() == tmp_path / f"model.pt/2026-01-01T00.00.00.000Z_{os.getpid()}/model.pt"
    assert mine.load().read_bytes() == b"this run's weights"
    assert CheckpointDataset(str(tmp_path / "model.pt"), Version(None, None)).load() == mine.load()  # newest
    assert sorted(p.name for p in mine.load().parent.iterdir()) == ["model.pt"]  # no temporary left
    with pytest.raises(DatasetError, match=r"versions 2026-01-01T00.00.00.000Z and .* are both taken"):
        CheckpointDataset(str(tmp_path / "model.pt"), version).save(this_run)


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
