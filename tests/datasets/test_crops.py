import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mle_hand_pipeline.datasets.crops import (
    CropBox,
    crop_to_source,
    keypoint_box,
    source_to_crop,
    square_crop_box,
    warp_crop,
)

coordinate = st.floats(-500, 1500, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    points=st.lists(st.tuples(coordinate, coordinate), min_size=1, max_size=21),
    x0=coordinate,
    y0=coordinate,
    side=st.floats(4, 2000),
    size=st.sampled_from([64, 128, 256]),
    mirrored=st.booleans(),
)
def test_crop_to_source_round_trip(points, x0, y0, side, size, mirrored):
    points = np.array(points)
    box = CropBox(x0, y0, side)
    back = crop_to_source(source_to_crop(points, box, size, mirrored), box, size, mirrored)
    assert np.abs(back - points).max() < 0.5
    np.testing.assert_allclose(back, points, atol=1e-6)


def test_square_box_is_centred_and_scaled():
    keypoints = np.array([[10.0, 20.0], [50.0, 40.0], [1000.0, 1000.0]])
    box = keypoint_box(keypoints, np.array([True, True, False]))
    assert box == (10.0, 20.0, 50.0, 40.0)
    crop = square_crop_box(box, scale=1.5, min_side=16)
    assert crop.side == 60.0 and crop.x0 == 0.0 and crop.y0 == 0.0
    assert square_crop_box((5, 5, 6, 6), scale=1.5, min_side=16).side == 16


def _centroid(image: np.ndarray) -> np.ndarray:
    weights = image.astype(float)
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]] + 0.5
    return np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()


def test_warped_pixels_land_where_the_mapping_says():
    """A bright square in the source ends up at source_to_crop of its centre, mirrored or not."""
    source = np.zeros((300, 400), np.uint8)
    source[150:156, 100:106] = 255  # centre (103, 153) in continuous pixel coordinates
    for mirrored in (False, True):
        box = CropBox(61.3, 97.8, 123.4)
        crop = np.asarray(warp_crop(Image.fromarray(source), box, 256, mirrored))
        expected = source_to_crop(np.array([103.0, 153.0]), box, 256, mirrored)
        np.testing.assert_allclose(_centroid(crop), expected, atol=0.25)
