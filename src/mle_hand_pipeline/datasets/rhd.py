"""Read RHD (``RHD_published_v2``) in its original layout into one row per hand (left and right).

Layout (docs/datasets.md): ``{training,evaluation}/anno_{part}.pickle`` is a dict
``{sample_id: {"xyz": (42, 3), "uv_vis": (42, 3), "K": (3, 3)}}``; rows 0-20 are the left hand and
21-41 the right hand, each in RHD order (fingers tip to palm), ``uv_vis[:, 2] == 1`` when visible.
Images are ``{part}/color/%05d.png``. The pickle is read with a restricted unpickler.
"""

from __future__ import annotations

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
from mle_hand_pipeline.datasets.safe_pickle import load_annotation_pickle
from mle_hand_pipeline.datasets.splits import split_ids
from mle_hand_pipeline.keypoints import RHD_TO_COMMON

PARTS = ("training", "evaluation")
HAND_ROWS = {"left": RHD_TO_COMMON, "right": RHD_TO_COMMON + 21}


def read_rhd(
    root: str | Path,
    parts: list[str],
    val_ratio: float,
    seed: int,
    on_bad_sample: OnBadSample,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per hand of every RHD sample in ``parts``, and the rejected samples.

    ``evaluation`` is the test split; ``training`` samples go to ``val`` with probability
    ``val_ratio`` (both hands of a sample together, seeded) and to ``train`` otherwise.

    Returns:
        (annotations with :data:`ANNOTATION_COLUMNS`, keypoints in the common order; rejections).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"RHD root not found: {root} (set rhd_root to the RHD_published_v2 folder)")
    unknown = set(parts) - set(PARTS)
    if unknown or not parts:
        raise ValueError(f"RHD parts must be a non-empty subset of {PARTS}, got {parts}")
    rows: list[dict] = []
    rejections: list[Rejection] = []
    for part in PARTS:
        if part not in parts:
            continue
        folder = root / part
        if not folder.is_dir():
            raise FileNotFoundError(f"RHD split folder not found: {folder}")
        annotations = load_annotation_pickle(folder / f"anno_{part}.pickle")
        if not isinstance(annotations, dict):
            raise ValueError(
                f"{folder / f'anno_{part}.pickle'}: expected a dict of samples, "
                f"got {type(annotations).__name__}"
            )
        sample_ids = sorted(annotations)
        if part == "evaluation":
            splits = dict.fromkeys(sample_ids, "test")
        else:
            assignment = split_ids(len(sample_ids), {"train": 1 - val_ratio, "val": val_ratio}, seed)
            splits = dict(zip(sample_ids, assignment, strict=True))
        for sample_id in sample_ids:
            _collect_sample(
                root,
                part,
                sample_id,
                annotations[sample_id],
                splits[sample_id],
                on_bad_sample,
                rows,
                rejections,
            )
    return pd.DataFrame(rows, columns=ANNOTATION_COLUMNS), rejections_frame(rejections)


def _collect_sample(
    root: Path,
    part: str,
    sample_id: object,
    annotation: object,
    split: str,
    on_bad_sample: OnBadSample,
    rows: list[dict],
    rejections: list[Rejection],
) -> None:
    where = f"{root / part / f'anno_{part}.pickle'} sample {sample_id!r}"
    image_id = sample_id if isinstance(sample_id, int) else -1
    try:
        if not isinstance(sample_id, int | np.integer) or sample_id < 0:
            raise ValueError(f"{where}: sample ids must be non-negative integers")
        if not isinstance(annotation, dict):
            raise ValueError(f"{where}: expected a dict with key 'uv_vis', got {type(annotation).__name__}")
        if "uv_vis" not in annotation:
            raise ValueError(f"{where}: missing key 'uv_vis' (keys present: {sorted(map(str, annotation))})")
        uv_vis = check_finite_array(annotation["uv_vis"], (42, 3), f"{where} 'uv_vis'")
        for key, shape in (("xyz", (42, 3)), ("K", (3, 3))):  # unused for 2D, but corrupt if malformed
            if key in annotation:
                check_finite_array(annotation[key], shape, f"{where} {key!r}")
        if not np.isin(uv_vis[:, 2], (0, 1)).all():
            raise ValueError(f"{where} 'uv_vis': visibility flags must be 0 or 1")
    except ValueError as error:
        for side in HAND_ROWS:
            reject_or_raise(
                Rejection("rhd", split, int(image_id), int(image_id), side, BAD_ANNOTATION, str(error)),
                on_bad_sample,
                rejections,
            )
        return
    relative = f"{part}/color/{int(sample_id):05d}.png"
    if not (root / relative).is_file():
        for side in HAND_ROWS:
            detail = f"{root / relative}: image file missing (sample {sample_id})"
            reject_or_raise(
                Rejection("rhd", split, int(sample_id), int(sample_id), side, MISSING_IMAGE, detail),
                on_bad_sample,
                rejections,
            )
        return
    for side, hand_rows in HAND_ROWS.items():
        hand = uv_vis[hand_rows]
        rows.append(
            {
                "dataset": "rhd",
                "split": split,
                "sample_id": int(sample_id),
                "image_id": int(sample_id),
                "version": "",
                "side": side,
                "source_image": relative,
                "keypoints_source": hand[:, :2].tolist(),
                "visible": (hand[:, 2] == 1).tolist(),
            }
        )
