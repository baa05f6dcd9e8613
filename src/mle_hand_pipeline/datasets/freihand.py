"""Read FreiHAND (``FreiHAND_pub_v2``) in its original layout into one row per hand image.

Layout (docs/datasets.md): ``training_xyz.json`` and ``training_K.json`` hold one
entry per *unique* sample; ``training/rgb/%08d.jpg`` holds ``len(versions)`` images per sample, image
``i`` showing sample ``i % n_unique`` in version ``i // n_unique``. The 2D keypoints are the pinhole
projections ``uv = (K @ xyz)[:2] / (K @ xyz)[2]``. Every hand is a right hand, every keypoint labelled.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mle_hand_pipeline.datasets.records import (
    ANNOTATION_COLUMNS,
    BAD_ANNOTATION,
    MISSING_IMAGE,
    OnBadSample,
    Rejection,
    check_finite_array,
    reject_or_raise,
    rejections_frame,
)
from mle_hand_pipeline.datasets.splits import split_ids

VERSIONS = ("gs", "hom", "sample", "auto")


def project(xyz: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Pinhole projection of (..., 21, 3) camera-frame points with (..., 3, 3) intrinsics -> (..., 21, 2)."""
    uvw = np.einsum("...ij,...kj->...ki", camera, xyz)
    return uvw[..., :2] / uvw[..., 2:3]


def _checked_projection(points: np.ndarray, intrinsics: np.ndarray, what: str) -> np.ndarray:
    """:func:`project` of (21, 3) joints, or ValueError naming ``what`` when K cannot be a camera.

    A singular K (all zeros, a zero focal length) or a joint projecting to depth ``w <= 0`` would
    give NaN keypoints or put every joint on one point, and so a hand of size 0.
    """
    if np.linalg.matrix_rank(intrinsics) < 3:
        raise ValueError(
            f"{what} is a singular intrinsic matrix {intrinsics.tolist()}; expected "
            "[[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with non-zero focal lengths fx, fy"
        )
    depth = (points @ intrinsics.T)[:, 2]
    if not (depth > 0).all():
        joint = int(np.argmax(~(depth > 0)))
        raise ValueError(
            f"{what} projects joint {joint} to depth w = {depth[joint]:.6g} <= 0 (behind the camera)"
        )
    return project(points, intrinsics)


def _read_json_list(path: Path) -> list:
    if not path.is_file():
        raise FileNotFoundError(f"FreiHAND file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list, got {type(data).__name__}")
    return data


def read_labels(root: Path, part: str) -> tuple[list, list]:
    """The ``{part}_xyz.json`` and ``{part}_K.json`` lists, checked to have the same length."""
    xyz = _read_json_list(root / f"{part}_xyz.json")
    camera = _read_json_list(root / f"{part}_K.json")
    if len(xyz) != len(camera):
        raise ValueError(
            f"{root}: {part}_xyz.json has {len(xyz)} entries but {part}_K.json has {len(camera)}; "
            "they must describe the same samples"
        )
    if not xyz:
        raise ValueError(f"{root / f'{part}_xyz.json'}: no samples")
    return xyz, camera


def read_freihand(
    root: str | Path,
    split_ratios: dict[str, float],
    seed: int,
    use_evaluation_set: str | bool,
    on_bad_sample: OnBadSample,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per FreiHAND image with its 2D keypoints, and the rejected samples.

    Args:
        root: the ``FreiHAND_pub_v2`` folder.
        split_ratios: ``{"train": .8, "val": .1, "test": .1}``, applied to *unique* samples so all
            versions of one hand land in the same split.
        seed: seed of the split.
        use_evaluation_set: ``"auto"`` uses ``evaluation/`` with ``evaluation_xyz.json`` as the test
            split when present (then ``test`` is not drawn from training); ``True`` requires it;
            ``False`` ignores it.
        on_bad_sample: ``"raise"`` or ``"skip"`` (skipped samples are returned as rejections).

    Returns:
        (annotations with :data:`ANNOTATION_COLUMNS`, rejections).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"FreiHAND root not found: {root} (set freihand_root to the FreiHAND_pub_v2 folder)"
        )
    has_evaluation = (root / "evaluation_xyz.json").is_file() and (root / "evaluation" / "rgb").is_dir()
    if use_evaluation_set is True and not has_evaluation:
        raise FileNotFoundError(
            f"use_evaluation_set is true but {root} lacks evaluation_xyz.json or evaluation/rgb/"
        )
    with_evaluation = has_evaluation and use_evaluation_set in (True, "auto")

    rows: list[dict] = []
    rejections: list[Rejection] = []
    xyz, camera = read_labels(root, "training")
    ratios = dict(split_ratios)
    if with_evaluation:
        ratios.pop("test", None)
    sample_split = split_ids(len(xyz), ratios, seed)
    _collect(root, "training", xyz, camera, sample_split, VERSIONS, on_bad_sample, rows, rejections)
    if with_evaluation:
        eval_xyz, eval_camera = read_labels(root, "evaluation")
        _collect(
            root,
            "evaluation",
            eval_xyz,
            eval_camera,
            ["test"] * len(eval_xyz),
            VERSIONS[:1],
            on_bad_sample,
            rows,
            rejections,
        )
    return pd.DataFrame(rows, columns=ANNOTATION_COLUMNS), rejections_frame(rejections)


def _collect(
    root: Path,
    part: str,
    xyz: list,
    camera: list,
    sample_split: list[str],
    versions: tuple[str, ...],
    on_bad_sample: OnBadSample,
    rows: list[dict],
    rejections: list[Rejection],
) -> None:
    rgb = root / part / "rgb"
    if not rgb.is_dir():
        raise FileNotFoundError(f"FreiHAND image folder not found: {rgb}")
    n_unique = len(xyz)
    for sample_id in range(n_unique):
        split = sample_split[sample_id]
        image_ids = [version * n_unique + sample_id for version in range(len(versions))]
        try:
            points = check_finite_array(
                xyz[sample_id], (21, 3), f"{root / f'{part}_xyz.json'} entry {sample_id}"
            )
            intrinsics = check_finite_array(
                camera[sample_id], (3, 3), f"{root / f'{part}_K.json'} entry {sample_id}"
            )
            if (points[:, 2] <= 0).any():
                raise ValueError(
                    f"{root / f'{part}_xyz.json'} entry {sample_id} has joints at or behind the camera"
                )
            keypoints = _checked_projection(
                points, intrinsics, f"{root / f'{part}_K.json'} entry {sample_id}"
            )
        except ValueError as error:
            for image_id in image_ids:
                reject_or_raise(
                    Rejection("freihand", split, sample_id, image_id, "right", BAD_ANNOTATION, str(error)),
                    on_bad_sample,
                    rejections,
                )
            continue
        for version, image_id in enumerate(image_ids):
            relative = f"{part}/rgb/{image_id:08d}.jpg"
            if not (root / relative).is_file():
                detail = (
                    f"{root / relative}: image file missing (sample {sample_id}, version {versions[version]})"
                )
                reject_or_raise(
                    Rejection("freihand", split, sample_id, image_id, "right", MISSING_IMAGE, detail),
                    on_bad_sample,
                    rejections,
                )
                continue
            rows.append(
                {
                    "dataset": "freihand",
                    "split": split,
                    "sample_id": sample_id,
                    "image_id": image_id,
                    "version": versions[version],
                    "side": "right",
                    "source_image": relative,
                    "keypoints_source": keypoints.tolist(),
                    "visible": [True] * 21,
                }
            )
