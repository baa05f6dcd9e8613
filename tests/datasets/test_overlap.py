"""The pixel check that keeps pretraining images out of validation and test splits."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mle_hand_pipeline.datasets.overlap import check_disjoint, pixel_fingerprint


def _image(path, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_disjoint_sets_pass_and_are_counted(tmp_path):
    pretrain = [_image(tmp_path / f"p{i}.png", i) for i in range(3)]
    pretrain.append(_image(tmp_path / "p0_again.png", 0))  # a duplicate inside the set
    held_out = [_image(tmp_path / f"h{i}.png", 100 + i) for i in range(2)]
    assert check_disjoint(pretrain, held_out) == {
        "n_pretrain_images": 4,
        "n_held_out_images": 2,
        "n_pretrain_distinct": 3,
        "n_held_out_distinct": 2,
        "n_shared": 0,
    }


def test_an_empty_side_is_an_error_not_a_pass(tmp_path):
    images = [_image(tmp_path / "p.png", 0)]
    with pytest.raises(ValueError, match="no pretraining image to check"):
        check_disjoint([], images)
    with pytest.raises(ValueError, match="no validation/test image to check"):
        check_disjoint(images, iter([]))


def test_a_shared_image_is_found_even_re_encoded(tmp_path):
    pretrain = [_image(tmp_path / f"p{i}.png", i) for i in range(3)]
    # the same pixels as p1, stored in another lossless format under another name
    Image.open(pretrain[1]).save(tmp_path / "copy.bmp")
    assert pixel_fingerprint(tmp_path / "copy.bmp") == pixel_fingerprint(pretrain[1])
    with pytest.raises(ValueError, match=r"1 pretraining image.*p1\.png == .*copy\.bmp"):
        check_disjoint(pretrain, [tmp_path / "copy.bmp", _image(tmp_path / "h.png", 50)])


def test_unreadable_image_is_named(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"bad\.png: not a readable image"):
        pixel_fingerprint(bad)
