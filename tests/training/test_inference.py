"""Crops stored at another size than the model input (the default: 256-px crops into a 64-px model).

The loader resizes stored crops to the input size, targets are normalised by the stored crop size, and
predictions come back in stored-crop pixels and then in source pixels. With a model whose output
follows the image content, the same hands cropped at 64, 96 and 128 px must give the same normalised
targets, nearly the same input images and the same predictions in source pixels.
"""

import numpy as np
import pytest
import torch
from torch import nn

from mle_hand_pipeline.datasets.cropping import CropSettings, crop_hands
from mle_hand_pipeline.datasets.records import ANNOTATION_COLUMNS
from mle_hand_pipeline.evaluation.report import evaluate_predictions, to_source
from mle_hand_pipeline.models.outputs import PoseOutput
from mle_hand_pipeline.training.augment import prepare_batch
from mle_hand_pipeline.training.data import HandCrops
from mle_hand_pipeline.training.inference import map_diagnostics, predict_crops

INPUT = 64
SIZES = (64, 96, 128)


class FixedKeypoints(nn.Module):
    """A stand-in pose model predicting the same normalised keypoints for every input, spread over the
    crop (corners and centre): whatever the crop size, they name the same source pixels, exactly."""

    def __init__(self, num_keypoints: int = 21):
        super().__init__()
        angle = torch.linspace(0, 6.0, num_keypoints)
        radius = torch.linspace(0.05, 0.45, num_keypoints)
        self.register_buffer("coords", torch.stack([radius * angle.cos(), radius * angle.sin()], dim=-1))

    def forward(self, images: torch.Tensor) -> PoseOutput:
        return PoseOutput(coords=self.coords.expand(len(images), 1, -1, -1))  # (B, T=1, K, 2)


@pytest.fixture(scope="module")
def crops_by_size(tiny_rhd, tmp_path_factory) -> dict:
    """The test hands of ``tiny_rhd`` cropped at each size in SIZES: {size: (table, crops_dir)}."""
    hands = tiny_rhd["hands"]
    test = hands[hands["split"] == "test"].reset_index(drop=True)
    annotations = test[ANNOTATION_COLUMNS]  # what the readers hand to the crop stage
    result = {64: (test, tiny_rhd["crops"])}
    for size in SIZES[1:]:
        folder = tmp_path_factory.mktemp(f"crops_{size}")
        table, _ = crop_hands(annotations, tiny_rhd["root"], folder, CropSettings(size=size), 1, "raise")
        result[size] = (table, folder)
    return result


def _batch(table, folder):
    dataset = HandCrops(table, folder)
    items = [dataset[i] for i in range(len(dataset))]
    return {key: torch.stack([item[key] for item in items]) for key in ("image", "keypoints", "visible")}


def test_crops_of_every_size_give_the_same_targets_and_inputs(crops_by_size):
    reference = None
    for size in SIZES:
        table, folder = crops_by_size[size]
        assert (table["crop_size"] == size).all()
        np.testing.assert_allclose(
            table["hand_size"], crops_by_size[64][0]["hand_size"] * size / 64, rtol=1e-9
        )
        images, target, visible = prepare_batch(_batch(table, folder), INPUT, torch.device("cpu"), None, None)
        assert images.shape[-2:] == (INPUT, INPUT)
        if reference is None:
            reference = images, target, visible
            continue
        torch.testing.assert_close(target, reference[1], atol=1e-6, rtol=0)  # normalised by the crop size
        assert torch.equal(visible, reference[2])
        # Same content after the resize: resampling differs, the picture does not.
        difference = (images - reference[0]).abs().mean()
        assert difference < 0.1 * reference[0].abs().mean(), (
            f"{size}px crops resized to {INPUT}: {difference}"
        )


def _predict(crops_by_size, size):
    table, folder = crops_by_size[size]
    model = FixedKeypoints()
    predictions = predict_crops(model, HandCrops(table, folder), INPUT, torch.device("cpu"), progress=False)
    assert predictions.coords.shape == (len(table), 1, 21, 2) and predictions.sigmas is None
    return table, predictions.coords, model.coords.double().numpy()


def test_predictions_scale_back_to_stored_crop_and_source_pixels(crops_by_size):
    table64, coords64, _ = _predict(crops_by_size, 64)
    source64 = to_source(coords64, table64)
    nme64 = evaluate_predictions(table64, coords64).metrics["nme"]
    for size in SIZES[1:]:
        table, coords, normalised = _predict(crops_by_size, size)
        # Stored-crop pixels of THIS crop size (not of the model input).
        np.testing.assert_allclose(
            coords[:, 0], np.broadcast_to((normalised + 0.5) * size, coords[:, 0].shape), rtol=0, atol=1e-4
        )
        # Source pixels through each row's crop box: the crop boxes are the same, so are the points.
        np.testing.assert_allclose(to_source(coords, table), source64, rtol=0, atol=1e-4)
        report = evaluate_predictions(table, coords)
        assert report.metrics["n_crops"] == len(table)
        assert report.metrics["nme"] == pytest.approx(nme64, rel=1e-6)  # hand_size scales with the crop
        assert report.metrics["epe_px"] > 0


class PeakedMaps(nn.Module):
    """Maps with one cell of logit ``height`` at FixedKeypoints' cells (T = 2: flat, then peaked)."""

    def __init__(self, height: float, cells: int = 16):
        super().__init__()
        self.height, self.cells = height, cells
        self.register_buffer("coords", FixedKeypoints().coords)

    def forward(self, images: torch.Tensor) -> PoseOutput:
        index = ((self.coords + 0.5) * self.cells).long().clamp(0, self.cells - 1)
        maps = torch.zeros(len(images), 2, len(self.coords), self.cells, self.cells)
        maps[:, 1, torch.arange(len(self.coords)), index[:, 1], index[:, 0]] = self.height
        return PoseOutput(coords=torch.zeros(len(images), 2, len(self.coords), 2), heatmaps=maps)


def test_map_diagnostics_decode_by_argmax_and_measure_peakedness(crops_by_size):
    table, folder = crops_by_size[64]
    crops = HandCrops(table, folder)
    model = PeakedMaps(height=20.0)
    maps = map_diagnostics(model, crops, INPUT, torch.device("cpu"))
    n, k = len(table), 21
    assert maps.argmax_coords.shape == (n, 2, k, 2) and maps.max_prob.shape == maps.entropy.shape == (n, 2, k)
    np.testing.assert_allclose(maps.max_prob[:, 0], 1 / 256, rtol=1e-5)  # flat: every cell alike
    np.testing.assert_allclose(maps.entropy[:, 0], np.log(256), rtol=1e-5)
    assert (maps.max_prob[:, 1] > 0.99).all() and (maps.entropy[:, 1] < 0.1).all()
    # the peaked stage decodes to the centre of each keypoint's cell, in stored-crop pixels
    cell = np.floor((model.coords.numpy() + 0.5) * 16).clip(0, 15)
    expected = (cell + 0.5) / 16 * 64
    np.testing.assert_allclose(maps.argmax_coords[:, 1], np.broadcast_to(expected, (n, k, 2)), atol=1e-4)
    with pytest.raises(ValueError, match="returns no heatmaps"):
        map_diagnostics(FixedKeypoints(), crops, INPUT, torch.device("cpu"))
