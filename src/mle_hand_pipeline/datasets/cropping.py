"""Write one square crop per hand, in parallel, and the table that describes them."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from mle_hand_pipeline.datasets.crops import (
    CropBox,
    keypoint_box,
    source_to_crop,
    square_crop_box,
    warp_crop,
)
from mle_hand_pipeline.datasets.records import (
    IDENTITY_COLUMNS,
    UNREADABLE_IMAGE,
    ZERO_SIZE_HAND,
    OnBadSample,
    Rejection,
    reject_or_raise,
    rejections_frame,
    stack_column,
)

HAND_COLUMNS = [
    *IDENTITY_COLUMNS,
    "crop_path",
    "crop_size",
    "box_x0",
    "box_y0",
    "box_side",
    "mirrored",
    "keypoints_source",
    "keypoints_crop",
    "visible",
    "n_visible",
    "hand_x0",
    "hand_y0",
    "hand_x1",
    "hand_y1",
    "hand_size",
]


@dataclass(frozen=True)
class CropSettings:
    """How crops are made (the ``crop`` parameter block).

    size: crop side in pixels (the model input size).
    scale: crop side = scale * max(w, h) of the visible keypoints' box (MMPose: 1.2 * 1.25 = 1.5).
    min_side: smallest crop side in source pixels, for hands with (nearly) collinear keypoints.
    mirror_left: mirror left hands so every crop looks like a right hand (recorded per crop).
    image_format: "jpg" (quality 95, 4:4:4) or "png" (lossless).
    """

    size: int = 256
    scale: float = 1.5
    min_side: float = 16.0
    mirror_left: bool = True
    image_format: str = "jpg"

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> CropSettings:
        """The ``preprocess.crop`` parameter block."""
        return cls(**params)


@dataclass(frozen=True)
class _CropJob:
    source: Path
    size: int
    targets: tuple[tuple[Path, CropBox, bool], ...]  # (crop file, box, mirrored) per hand


def _run_job(job: _CropJob) -> str | None:
    """Write the crops of one source image; returns an error message instead of raising."""
    try:
        with Image.open(job.source) as opened:
            image = opened.convert("RGB")  # forces a full decode, so truncation shows here
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return f"{job.source}: cannot read image ({type(error).__name__}: {error})"
    for path, box, mirrored in job.targets:
        crop = warp_crop(image, box, job.size, mirrored)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".jpg":
            crop.save(path, quality=95, subsampling=0)
        else:
            crop.save(path)
    return None


def crop_hands(
    annotations: pd.DataFrame,
    raw_root: str | Path,
    crops_dir: str | Path,
    settings: CropSettings,
    workers: int,
    on_bad_sample: OnBadSample,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write a crop per annotation row and return (hand table with :data:`HAND_COLUMNS`, rejections).

    Crops go to ``crops_dir/<split>_<size>/<image_id>_<side>.<format>``; ``crop_path`` is relative to
    ``crops_dir``. Rows keep the order of ``annotations``, whatever the number of workers.
    """
    raw_root, crops_dir = Path(raw_root), Path(crops_dir)
    if annotations.empty:
        return pd.DataFrame(columns=HAND_COLUMNS), rejections_frame([])
    keypoints = stack_column(annotations["keypoints_source"]).astype(np.float64)
    visible = stack_column(annotations["visible"]).astype(bool)

    rows = []
    rejections: list[Rejection] = []
    for index, row in enumerate(annotations.itertuples(index=False)):
        mirrored = settings.mirror_left and row.side == "left"
        box = square_crop_box(
            keypoint_box(keypoints[index], visible[index]), settings.scale, settings.min_side
        )
        crop_points = source_to_crop(keypoints[index], box, settings.size, mirrored)
        hand_x0, hand_y0, hand_x1, hand_y1 = keypoint_box(crop_points, visible[index])
        hand_size = max(hand_x1 - hand_x0, hand_y1 - hand_y0)
        if not hand_size > 0:  # the NME/PCK divisor: a hand of size 0 would make every error infinite
            point = keypoints[index][visible[index]][0]
            detail = (
                f"{raw_root / row.source_image}: {row.side} hand of sample {row.sample_id} has a zero-size "
                f"box: its {int(visible[index].sum())} visible keypoints all lie at "
                f"({point[0]:.2f}, {point[1]:.2f})"
            )
            reject_or_raise(
                Rejection(
                    row.dataset, row.split, row.sample_id, row.image_id, row.side, ZERO_SIZE_HAND, detail
                ),
                on_bad_sample,
                rejections,
            )
            continue
        rows.append(
            {
                **{column: getattr(row, column) for column in IDENTITY_COLUMNS},
                "crop_path": (
                    f"{row.split}_{settings.size}/{row.image_id:08d}_{row.side}.{settings.image_format}"
                ),
                "crop_size": settings.size,
                "box_x0": box.x0,
                "box_y0": box.y0,
                "box_side": box.side,
                "mirrored": mirrored,
                "keypoints_source": keypoints[index].tolist(),
                "keypoints_crop": crop_points.tolist(),
                "visible": visible[index].tolist(),
                "n_visible": int(visible[index].sum()),
                "hand_x0": hand_x0,
                "hand_y0": hand_y0,
                "hand_x1": hand_x1,
                "hand_y1": hand_y1,
                "hand_size": hand_size,
            }
        )
    table = pd.DataFrame(rows, columns=HAND_COLUMNS)

    jobs: dict[str, list] = {}
    for row in table.itertuples(index=False):
        box = CropBox(row.box_x0, row.box_y0, row.box_side)
        jobs.setdefault(row.source_image, []).append((crops_dir / row.crop_path, box, row.mirrored))
    job_list = [
        _CropJob(raw_root / source, settings.size, tuple(targets)) for source, targets in jobs.items()
    ]
    errors = _run_jobs(job_list, workers)

    failed: set[str] = set()
    for source, error in zip(jobs, errors, strict=True):
        if error is None:
            continue
        failed.add(source)
        for row in table[table["source_image"] == source].itertuples(index=False):
            rejection = Rejection(
                row.dataset, row.split, row.sample_id, row.image_id, row.side, UNREADABLE_IMAGE, error
            )
            reject_or_raise(rejection, on_bad_sample, rejections)
    table = table[~table["source_image"].isin(failed)].reset_index(drop=True)
    return table, rejections_frame(rejections)


def _run_jobs(jobs: list[_CropJob], workers: int) -> list[str | None]:
    progress = {"total": len(jobs), "desc": "cropping", "unit": "img", "mininterval": 1.0}
    if workers <= 1:
        return [_run_job(job) for job in tqdm(jobs, **progress)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(
            tqdm(pool.map(_run_job, jobs, chunksize=max(1, min(64, len(jobs) // (8 * workers)))), **progress)
        )
