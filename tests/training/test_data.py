"""Training batches from the crop store: on the device or through DataLoader workers, the same."""

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from mle_hand_pipeline.training.data import DeviceBatches, HandCrops, fits_on_device
from mle_hand_pipeline.training.engine import ModelSpec, TrainConfig, fit

SPEC = ModelSpec(method="mle", backbone="resnet18", stages=2, input_size=64, head_channels=16)


def _train(tiny_rhd):
    hands = tiny_rhd["hands"]
    return hands[hands["split"] == "train"].reset_index(drop=True)


def test_device_batches_are_the_data_loader_batches(tiny_rhd):
    dataset = HandCrops(_train(tiny_rhd), tiny_rhd["crops"])
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=5, drop_last=True)
    sampler.set_epoch(3)
    loader = list(DataLoader(dataset, batch_size=8, sampler=sampler, drop_last=True))
    on_device = DeviceBatches(dataset, sampler, 8, torch.device("cpu"))
    gathered = list(on_device)
    assert len(gathered) == len(on_device) == len(loader) == len(dataset) // 8
    for ours, theirs in zip(gathered, loader, strict=True):
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert torch.equal(ours[key], theirs[key]), key
            assert ours[key].is_contiguous()
    assert not fits_on_device(dataset, torch.device("cpu"))  # auto keeps CPU training on the loader path


@pytest.mark.slow
def test_training_on_device_data_repeats_loader_training(tiny_rhd, tmp_path):
    train = _train(tiny_rhd)
    val = tiny_rhd["hands"][tiny_rhd["hands"]["split"] == "val"].reset_index(drop=True)
    config = TrainConfig(epochs=1, batch_size=8, lr_milestones=(1,), seed=2, devices="cpu", num_workers=0)
    histories = []
    for setting in (True, False):
        on_device = TrainConfig(**{**config.__dict__, "data_on_device": setting})
        result = fit(SPEC, on_device, train, val, tiny_rhd["crops"], tmp_path / str(setting))
        histories.append(result.history.drop(columns="images_per_s"))
    assert histories[0].equals(histories[1])
    with pytest.raises(ValueError, match=r"train\.data_on_device must be auto, true or false, got 'always'"):
        TrainConfig.from_params({**config.__dict__, "data_on_device": "always"})


def test_a_table_of_several_splits_reads_each_from_its_array(tiny_rhd):
    hands = tiny_rhd["hands"]
    assert hands["split"].nunique() == 3
    from_arrays = HandCrops(hands, tiny_rhd["crops"])
    from_jpeg = HandCrops(hands, tiny_rhd["crops"], decode_jpeg=True)
    for index in range(0, len(hands), 7):
        assert torch.equal(from_arrays[index]["image"], from_jpeg[index]["image"])
    assert torch.equal(from_arrays.images(torch.device("cpu"))[-1], from_jpeg[len(hands) - 1]["image"])
