"""Prove that two image sets share no image: pixel fingerprints (for the pretraining set, issue 12).

A backbone pretrained on images that also appear in the evaluation's validation or test split would
inflate every pretrained score. The pretraining set is rendered with a different seed, which makes a
shared image practically impossible; :func:`check_disjoint` makes it checked: it compares the
decoded pixels (not the file bytes, so a re-encoded copy is still caught) of every pretraining image
with every validation/test source image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm


def pixel_fingerprint(path: str | Path) -> str:
    """SHA-256 of an image's decoded RGB pixels and size (equal for equal pixels in any format)."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable image ({type(error).__name__}: {error})") from error
    digest = hashlib.sha256(f"{pixels.shape}".encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def fingerprints(paths: Iterable[str | Path], desc: str = "fingerprinting images") -> dict[str, Path]:
    """``{fingerprint: first path with it}`` for ``paths``."""
    found: dict[str, Path] = {}
    for path in tqdm(list(paths), desc=desc, unit="img", leave=False, mininterval=1.0):
        found.setdefault(pixel_fingerprint(path), Path(path))
    return found


def check_disjoint(
    pretrain_images: Iterable[str | Path], held_out_images: Iterable[str | Path]
) -> dict[str, int]:
    """Raise if any pretraining image has the same pixels as a held-out (validation/test) image.

    Args:
        pretrain_images: every image file of the pretraining set.
        held_out_images: every source image of the evaluation data's validation and test splits.

    Returns:
        ``{"n_pretrain_images", "n_held_out_images", "n_shared"}`` (``n_shared`` is 0): files checked,
        and ``n_pretrain_distinct``/``n_held_out_distinct``, their distinct pixel contents.

    Raises:
        ValueError: naming up to 5 shared pairs and how many there are; or when there is no image on
            either side (a wrong folder would pass the check without checking anything).
    """
    pretrain_images, held_out_images = list(pretrain_images), list(held_out_images)
    for side, images in (("pretraining", pretrain_images), ("validation/test", held_out_images)):
        if not images:
            raise ValueError(f"no {side} image to check: nothing would be compared")
    pretrain = fingerprints(pretrain_images, "fingerprinting pretraining images")
    held_out = fingerprints(held_out_images, "fingerprinting validation/test images")
    shared = sorted(set(pretrain) & set(held_out), key=lambda h: str(pretrain[h]))
    if shared:
        pairs = "; ".join(f"{pretrain[h]} == {held_out[h]}" for h in shared[:5])
        raise ValueError(
            f"{len(shared)} pretraining image(s) have the same pixels as validation/test images of the "
            f"evaluation data ({pairs}); render the pretraining set with another seed"
        )
    return {
        "n_pretrain_images": len(pretrain_images),
        "n_held_out_images": len(held_out_images),
        "n_pretrain_distinct": len(pretrain),
        "n_held_out_distinct": len(held_out),
        "n_shared": 0,
    }
