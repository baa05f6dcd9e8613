"""Catalog dataset types of the project."""

import os

from kedro.io import Version

from mle_hand_pipeline.io import CheckpointDataset


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
