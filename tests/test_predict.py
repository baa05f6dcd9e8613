"""``mle_hand_pipeline.predict`` on the real samples: crops, mapping to source pixels, backends, errors."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from predict_helpers import FREIHAND_IMAGES, REAL, RHD_IMAGES, SIZE, save_checkpoint, tiny_model

from mle_hand_pipeline.datasets.crops import (
    keypoint_box,
    source_to_crop,
    square_crop_box,
    warp_crop,
)
from mle_hand_pipeline.datasets.records import stack_column
from mle_hand_pipeline.datasets.rhd import read_rhd
from mle_hand_pipeline.models import InferenceWrapper
from mle_hand_pipeline.predict import (
    ImageError,
    ImagePrediction,
    ModelNotFoundError,
    Predictor,
    load_predictor,
    overlay,
    overlay_names,
    parse_box,
    predict_images,
    resolve_images,
    write_outputs,
)
from mle_hand_pipeline.pyfunc_model import crop_for, crop_image, read_image


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("model") / "best.pt")


def _rhd_hand() -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (21, 2) and visibility of the hand with most visible keypoints in real RHD image 0."""
    hands, _ = read_rhd(REAL / "RHD_published_v2", ["evaluation"], 0.0, 0, "raise")
    hands = hands[hands["source_image"].str.endswith(RHD_IMAGES[0].name)]
    hand = hands.iloc[int(np.argmax([np.sum(v) for v in hands["visible"]]))]
    return stack_column(hands.loc[[hand.name], "keypoints_source"])[0], np.asarray(hand["visible"], bool)


class FixedPredictor:
    """Always returns the same crop-pixel keypoints: isolates cropping and the mapping back."""

    def __init__(self, coords: np.ndarray):
        self.coords = coords.astype(np.float32)

    def __call__(self, batch: np.ndarray):
        assert batch.shape[1:] == (3, SIZE, SIZE) and batch.dtype == np.float32
        coords = np.repeat(self.coords[None], len(batch), axis=0)
        return coords, np.full_like(coords, 2.0)


def test_crop_image_is_the_preprocessing_crop():
    """The pyfunc's Pillow-only copy of the crop gives the bytes of datasets.crops.warp_crop."""
    image = read_image(RHD_IMAGES[0])
    keypoints, visible = _rhd_hand()
    box = square_crop_box(keypoint_box(keypoints, visible), scale=1.5, min_side=16.0)
    crop = crop_for((image.shape[1], image.shape[0]), keypoint_box(keypoints, visible), box_scale=1.5)
    assert (crop.x0, crop.y0, crop.side) == pytest.approx((box.x0, box.y0, box.side))
    for mirrored in (False, True):
        expected = np.asarray(warp_crop(Image.fromarray(image), box, SIZE, mirrored))
        np.testing.assert_array_equal(crop_image(image, crop, SIZE, mirrored), expected)


@pytest.mark.parametrize("mirrored", [False, True])
def test_keypoints_map_back_to_source_pixels(mirrored):
    """With a box, predicted crop pixels map to the source points that the crop shows there."""
    keypoints, visible = _rhd_hand()
    tight = keypoint_box(keypoints, visible)
    box = square_crop_box(tight, 1.5, 16.0)
    crop_points = source_to_crop(keypoints, box, SIZE, mirrored)
    predictor = Predictor(FixedPredictor(crop_points), SIZE, "torch", "fixed")
    predictions, failures = predict_images(predictor, [RHD_IMAGES[0]], box=tight, mirrored=mirrored)
    assert not failures
    np.testing.assert_allclose(predictions[0].keypoints, keypoints, atol=1e-3)
    np.testing.assert_allclose(predictions[0].sigmas, 2.0 * box.side / SIZE, rtol=1e-6)


def test_whole_image_crop_is_centred_square():
    predictor = Predictor(FixedPredictor(np.full((21, 2), SIZE / 2)), SIZE, "torch", "fixed")
    predictions, _ = predict_images(predictor, [FREIHAND_IMAGES[0]])
    p = predictions[0]
    assert (p.width, p.height) == (224, 224)
    assert (p.crop.x0, p.crop.y0, p.crop.side) == (0, 0, 224)
    np.testing.assert_allclose(p.keypoints, 112.0)  # the crop centre is the image centre


def test_torch_and_onnx_backends_agree_on_a_checkpoint(checkpoint):
    torch_predictor = load_predictor(checkpoint, "torch")
    onnx_predictor = load_predictor(checkpoint, "onnx")
    assert torch_predictor.input_size == onnx_predictor.input_size == SIZE
    images = [*RHD_IMAGES, *FREIHAND_IMAGES[:2]]
    by_torch, _ = predict_images(torch_predictor, images, batch_size=2)
    by_onnx, _ = predict_images(onnx_predictor, images, batch_size=4)
    assert len(by_torch) == len(by_onnx) == len(images)
    for a, b in zip(by_torch, by_onnx, strict=True):
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)
        np.testing.assert_allclose(a.sigmas, b.sigmas, atol=1e-3)
    spread = np.ptp(np.stack([p.keypoints for p in by_torch]), axis=1)
    assert (spread > 5).all()  # keypoints are spread, so agreement is not trivial

    # And they are the model's own output, mapped from the crop to the source.
    image = read_image(images[0])
    with torch.no_grad():
        crop = crop_for((image.shape[1], image.shape[0]), None)
        pixels = torch.tensor(crop_image(image, crop, SIZE)).permute(2, 0, 1)[None].float() / 255
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        coords, _ = InferenceWrapper(tiny_model())((pixels - mean) / std)
    expected = coords[0].numpy() * crop.side / SIZE + [crop.x0, crop.y0]
    np.testing.assert_allclose(by_torch[0].keypoints, expected, atol=1e-3)


def test_a_batch_goes_past_bad_images_and_names_them(checkpoint, tmp_path):
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(FREIHAND_IMAGES[0].read_bytes()[:3000])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    images = [FREIHAND_IMAGES[0], truncated, tmp_path / "missing.png", text, FREIHAND_IMAGES[1]]
    predictions, failures = predict_images(load_predictor(checkpoint), images)
    assert [p.image for p in predictions] == [str(FREIHAND_IMAGES[0]), str(FREIHAND_IMAGES[1])]
    assert [f.image for f in failures] == [str(truncated), str(tmp_path / "missing.png"), str(text)]
    assert "truncated.jpg: cannot read image" in failures[0].error
    assert "missing.png: no such image file" in failures[1].error
    assert "notes.png: cannot read image" in failures[2].error


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ((0, 0, 300, 100), "lies outside the 224x224 image"),
        ((-5, 10, 50, 60), "lies outside the 224x224 image"),
        ((50, 50, 50, 80), "empty box"),
    ],
)
def test_boxes_outside_the_image_are_refused_per_image(box, message):
    predictor = Predictor(FixedPredictor(np.zeros((21, 2))), SIZE, "torch", "fixed")
    predictions, failures = predict_images(predictor, [FREIHAND_IMAGES[0]], box=box)
    assert not predictions
    assert FREIHAND_IMAGES[0].name in failures[0].error and message in failures[0].error


def test_parse_box():
    assert parse_box("1,2.5, 30,40") == (1.0, 2.5, 30.0, 40.0)
    assert parse_box(" 1 2 3 4") == parse_box([1, 2, 3, 4]) == (1.0, 2.0, 3.0, 4.0)
    assert parse_box(None) is None
    for bad in ("1,2,3", "a,b,c,d"):
        with pytest.raises(ValueError, match="four numbers"):
            parse_box(bad)


def test_missing_and_unloadable_models_give_clear_errors(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"'nowhere/best\.pt' not found"):
        load_predictor("nowhere/best.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelNotFoundError, match=r"junk\.pt: not a training checkpoint"):
        load_predictor(junk)
    graph = tmp_path / "model.onnx"
    graph.write_bytes(b"not onnx")
    with pytest.raises(ValueError, match="use the onnx backend"):
        load_predictor(graph, "torch")
    with pytest.raises(ModelNotFoundError, match="not a loadable ONNX graph"):
        load_predictor(graph, "onnx")
    with pytest.raises(ValueError, match="unknown backend"):
        load_predictor(graph, "tensorrt")


def test_write_outputs_json_csv_and_overlays(checkpoint, tmp_path):
    predictor = load_predictor(checkpoint)
    images = [RHD_IMAGES[0], FREIHAND_IMAGES[0], tmp_path / "missing.png"]
    predictions, failures = predict_images(predictor, images, box=None)
    written = write_outputs(predictions, failures, tmp_path / "out", predictor)

    document = json.loads(written.json.read_text())
    assert document["backend"] == "torch" and document["input_size"] == SIZE
    assert [p["image"] for p in document["predictions"]] == [str(RHD_IMAGES[0]), str(FREIHAND_IMAGES[0])]
    assert np.asarray(document["predictions"][0]["keypoints"]).shape == (21, 2)
    np.testing.assert_allclose(document["predictions"][1]["keypoints"], predictions[1].keypoints)
    assert document["failures"][0]["image"] == str(tmp_path / "missing.png")

    with written.csv.open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 2 * 21
    assert rows[21]["image"] == str(FREIHAND_IMAGES[0]) and rows[21]["name"] == "wrist"
    assert float(rows[21]["x"]) == pytest.approx(predictions[1].keypoints[0, 0])

    assert [p.name for p in written.overlays] == ["00000.png", "00000000.png"]
    drawn = np.asarray(Image.open(written.overlays[0]))
    source = read_image(RHD_IMAGES[0])
    assert drawn.shape == source.shape
    changed = (drawn != source).any(axis=-1)
    x, y = predictions[0].keypoints[0].astype(int)
    assert changed[y, x]  # the wrist's disc is drawn where the wrist was predicted
    assert changed.mean() < 0.2  # the rest of the photo is untouched


def test_overlay_keeps_the_image_size_for_non_square_images(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(np.full((90, 200, 3), 128, dtype=np.uint8)).save(path)
    predictor = Predictor(FixedPredictor(np.full((21, 2), SIZE / 2)), SIZE, "torch", "fixed")
    (prediction,), _ = predict_images(predictor, [path])
    assert (prediction.crop.x0, prediction.crop.y0, prediction.crop.side) == (0, -55, 200)
    assert overlay(prediction).shape == (90, 200, 3)


def test_overlay_names_are_distinct_even_when_a_numbered_name_is_an_images_stem():
    def named(*paths):
        return overlay_names([ImagePrediction(p, 1, 1, None, None, False, None, None) for p in paths])

    # x, x, x_1 numbered blindly gives x, x_1, x_1: one overlay written over another
    assert named("a/x.jpg", "b/x.jpg", "c/x_1.jpg") == ["x", "x_1", "x_1_1"]
    assert named("c/x_1.jpg", "a/x.jpg", "b/x.jpg") == ["x_1", "x", "x_2"]
    assert named("a/y.png", "b/y.jpg") == ["y", "y_1"]


def test_resolve_images_expands_globs_and_keeps_plain_paths(tmp_path):
    for name in ("b.png", "a.png"):
        shutil.copy(RHD_IMAGES[0], tmp_path / name)
    found = resolve_images([str(tmp_path / "*.png"), str(tmp_path / "a.png"), "missing.jpg"])
    assert found == [str(tmp_path / "a.png"), str(tmp_path / "b.png"), "missing.jpg"]
    with pytest.raises(FileNotFoundError, match="no image matches"):
        resolve_images(str(tmp_path / "*.jpg"))


def test_a_file_named_like_a_glob_is_that_file_and_a_folder_is_its_images(tmp_path):
    """Issue 38: `predict 'photo[1].jpg'` predicted photo1.jpg when it existed, and said "no image
    matches" when it did not, though the file was there."""
    for name in ("photo[1].png", "photo1.png", "notes.txt"):
        shutil.copy(RHD_IMAGES[0], tmp_path / name)
    assert resolve_images(str(tmp_path / "photo[1].png")) == [str(tmp_path / "photo[1].png")]
    (tmp_path / "photo1.png").unlink()
    assert resolve_images(str(tmp_path / "photo[1].png")) == [str(tmp_path / "photo[1].png")]
    assert resolve_images(str(tmp_path)) == [str(tmp_path / "photo[1].png")]  # images only, not notes.txt
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no images .* in the folder .*empty"):
        resolve_images(str(tmp_path / "empty"))


def test_an_output_folder_with_results_is_refused_unless_replaced_and_then_cleared(checkpoint, tmp_path):
    """Issue 38: reusing --out replaced the results and left the previous run's overlays beside them."""
    predictor = load_predictor(checkpoint)
    out = tmp_path / "out"
    first = write_outputs(*predict_images(predictor, [RHD_IMAGES[0], FREIHAND_IMAGES[0]]), out, predictor)
    assert len(first.overlays) == 2
    second_run = predict_images(predictor, [FREIHAND_IMAGES[0]])
    with pytest.raises(FileExistsError, match=r"out is not empty \(keypoints\.csv, overlays, predictions"):
        write_outputs(*second_run, out, predictor)
    second = write_outputs(*second_run, out, predictor, replace=True)
    assert sorted(p.name for p in (out / "overlays").iterdir()) == [p.name for p in second.overlays]
    assert len(json.loads(second.json.read_text())["predictions"]) == 1
    (out / "mine.txt").write_text("not a prediction")
    with pytest.raises(FileExistsError, match=r"holds files a prediction run does not write \(mine\.txt\)"):
        write_outputs(*second_run, out, predictor, replace=True)


def test_image_error_is_a_value_error():
    with pytest.raises(ImageError):
        crop_for((10, 10), (0, 0, 11, 5), name="x.png")


def test_bf16_weights_stay_close_to_fp32_and_only_for_checkpoints_on_torch(checkpoint, tmp_path):
    images = [*RHD_IMAGES, *FREIHAND_IMAGES[:1]]
    by_fp32, _ = predict_images(load_predictor(checkpoint, "torch"), images, batch_size=2)
    by_bf16, _ = predict_images(load_predictor(checkpoint, "torch", precision="bf16"), images, batch_size=2)
    for a, b in zip(by_fp32, by_bf16, strict=True):
        assert b.keypoints.dtype == a.keypoints.dtype and not np.array_equal(a.keypoints, b.keypoints)
        crop_px = np.abs(a.keypoints - b.keypoints).max() * SIZE / a.crop.side
        assert crop_px < 2.0  # bf16 keeps 8 bits of mantissa: ~1 px of this untrained model's 64-px input
        np.testing.assert_allclose(a.sigmas, b.sigmas, rtol=0.05)
    with pytest.raises(ValueError, match=r"bf16 needs a training checkpoint on the torch backend"):
        load_predictor(checkpoint, "onnx", precision="bf16")
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"")
    with pytest.raises(ValueError, match=r"model.onnx is an onnx on onnx"):
        load_predictor(onnx, "onnx", precision="bf16")
    with pytest.raises(ValueError, match=r"unknown precision 'fp16'; valid: fp32, bf16"):
        load_predictor(checkpoint, "torch", precision="fp16")


def test_a_phone_photo_is_predicted_as_displayed_with_its_exif_orientation(tmp_path):
    """Issue 18, row 7: EXIF orientation 6 (rotate 90 degrees clockwise to display) was ignored."""
    displayed = np.zeros((90, 200, 3), dtype=np.uint8)
    displayed[10:40, 10:60] = (250, 30, 30)  # a red patch at the top left, as the user sees it
    stored = Image.fromarray(displayed).transpose(Image.Transpose.ROTATE_90)  # sideways in the file
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    path = tmp_path / "phone.jpg"
    stored.save(path, format="JPEG", quality=95, exif=exif)
    assert Image.open(path).size == (90, 200)  # the file's own pixels are sideways
    pixels = read_image(path)
    assert pixels.shape == (90, 200, 3)
    assert np.abs(pixels.astype(int) - displayed).mean() < 3
    predictor = Predictor(FixedPredictor(np.full((21, 2), SIZE / 2)), SIZE, "torch", "fixed")
    (prediction,), _ = predict_images(predictor, [path])
    assert (prediction.width, prediction.height) == (200, 90)
    assert (prediction.crop.x0, prediction.crop.y0, prediction.crop.side) == (0, -55, 200)
    np.testing.assert_allclose(prediction.keypoints, np.full((21, 2), [100, 45]), atol=1e-3)
    drawn = overlay(prediction)
    assert drawn.shape == (90, 200, 3) and tuple(drawn[20, 30]) == tuple(pixels[20, 30])  # upright


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_a_16_bit_image_is_scaled_not_clipped(tmp_path, mode):
    """Issue 18, row 6: a 16-bit PNG was clipped at 255, 99.4 % white."""
    values = np.linspace(0, 65535, 64 * 128).reshape(64, 128).round().astype(np.uint16)
    path = tmp_path / ("sixteen.png" if mode == "I;16" else "thirty_two.tif")
    image = Image.fromarray(values) if mode == "I;16" else Image.fromarray(values.astype(np.int32), "I")
    image.save(path)
    assert Image.open(path).mode in ("I;16", "I")
    pixels = read_image(path)
    assert pixels.shape == (64, 128, 3) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels[..., 0], np.rint(values / 257).astype(np.uint8))
    assert (pixels == 255).mean() < 0.01
    # An 8-bit greyscale image is unchanged.
    Image.fromarray((values // 257).astype(np.uint8)).save(tmp_path / "eight.png")
    np.testing.assert_array_equal(read_image(tmp_path / "eight.png")[..., 1], values // 257)
