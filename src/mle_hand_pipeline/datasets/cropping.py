"""Write one square crop per hand, in parallel, and the table that describes them, as a crop store.

See :mod:`.crop_store` for the store's layout and how it is switched in whole.
"""

from __future__ import annotations

import io
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from mle_hand_pipeline.datasets.crop_store import (
    ARRAYS,
    REJECTIONS,
    TABLE,
    array_path,
    commit_folder,
    staging_folder,
    write_manifest,
)
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
class CropPlan:
    """Everything :func:`crop_hands` needs but the output folder: what a crop node hands to the crop
    store dataset, which writes it (so the crops are the node's output, not a side effect)."""

    annotations: pd.DataFrame
    raw_root: str
    settings: CropSettings
    workers: int
    on_bad_sample: OnBadSample

    def write(self, crops_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
        return crop_hands(
            self.annotations, self.raw_root, crops_dir, self.settings, self.workers, self.on_bad_sample
        )


@dataclass(frozen=True)
class _Target:
    path: Path  # crop file
    box: CropBox
    mirrored: bool
    array: Path  # the split's .npy
    offset: int  # byte offset of this crop's row in it


@dataclass(frozen=True)
class _CropJob:
    source: Path
    size: int
    targets: tuple[_Target, ...]  # one per hand of the source image


def _run_job(job: _CropJob) -> str | None:
    """Write the crops of one source image; returns an error message instead of raising.

    Each crop is encoded, written, and decoded back from the same bytes into its row of the split's
    array, so the array holds exactly what a reader of the crop file gets.
    """
    try:
        with Image.open(job.source) as opened:
            image = opened.convert("RGB")  # forces a full decode, so truncation shows here
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return f"{job.source}: cannot read image ({type(error).__name__}: {error})"
    for target in job.targets:
        crop = warp_crop(image, target.box, job.size, target.mirrored)
        encoded = io.BytesIO()
        if target.path.suffix == ".jpg":
            crop.save(encoded, format="JPEG", quality=95, subsampling=0)
        else:
            crop.save(encoded, format="PNG")
        target.path.parent.mkdir(parents=True, exist_ok=True)
        target.path.write_bytes(encoded.getvalue())
        with Image.open(encoded) as written:
            pixels = np.asarray(written.convert("RGB"), dtype=np.uint8)
        descriptor = os.open(target.array, os.O_WRONLY)
        try:
            os.pwrite(descriptor, pixels.tobytes(), target.offset)
        finally:
            os.close(descriptor)
    return None


def crop_hands(
    annotations: pd.DataFrame,
    raw_root: str | Path,
    crops_dir: str | Path,
    settings: CropSettings,
    workers: int,
    on_bad_sample: OnBadSample,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write a crop per annotation row as the crop store ``crops_dir``; return (hand table with
    :data:`HAND_COLUMNS`, rejections).

    Crops go to ``crops_dir/<split>_<size>/<image_id>_<side>.<format>`` (``crop_path`` is relative to
    ``crops_dir``) and, decoded, to ``crops_dir/arrays/<split>.npy``. Rows keep the order of
    ``annotations``, whatever the number of workers. Everything is written into ``<crops_dir>.tmp-<pid>``
    and replaces ``crops_dir`` only when complete: on any error the previous store is left as it was.
    """
    raw_root, crops_dir = Path(raw_root), Path(crops_dir)
    table, rejections = _crop_table(annotations, settings, raw_root, on_bad_sample)
    staging = staging_folder(crops_dir)
    try:
        table, rejections = _write_crops(
            table, raw_root, staging, settings, workers, on_bad_sample, rejections
        )
        table.to_parquet(staging / TABLE)
        rejections.to_parquet(staging / REJECTIONS)
        write_manifest(staging, table, settings.size, settings.image_format)
        commit_folder(staging, crops_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return table, rejections


def _crop_table(
    annotations: pd.DataFrame, settings: CropSettings, raw_root: Path, on_bad_sample: OnBadSample
) -> tuple[pd.DataFrame, list[Rejection]]:
    """The hand table: each annotation row with its crop box, crop file and crop-pixel keypoints; and
    the rejections of hands whose visible keypoints have a zero-size box (raised in ``raise`` mode)."""
    if annotations.empty:
        return pd.DataFrame(columns=HAND_COLUMNS), []
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
    return pd.DataFrame(rows, columns=HAND_COLUMNS), rejections


def _write_crops(
    table: pd.DataFrame,
    raw_root: Path,
    root: Path,
    settings: CropSettings,
    workers: int,
    on_bad_sample: OnBadSample,
    rejections: list[Rejection],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Crop files and split arrays under ``root`` for every row of ``table``; returns the rows whose
    source image could be read and ``rejections`` with the others added."""
    (root / ARRAYS).mkdir()
    row_bytes = settings.size * settings.size * 3
    offsets = {}
    for split, count in table["split"].value_counts().items():
        array = np.lib.format.open_memmap(
            array_path(root, split), mode="w+", dtype=np.uint8, shape=(count, settings.size, settings.size, 3)
        )
        offsets[split] = array.offset
        del array
    position = table.groupby("split").cumcount().to_numpy()

    jobs: dict[str, list[_Target]] = {}
    for index, row in enumerate(table.itertuples(index=False)):
        jobs.setdefault(row.source_image, []).append(
            _Target(
                root / row.crop_path,
                CropBox(row.box_x0, row.box_y0, row.box_side),
                row.mirrored,
                array_path(root, row.split),
                offsets[row.split] + int(position[index]) * row_bytes,
            )
        )
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
    kept = ~table["source_image"].isin(failed).to_numpy()
    if not kept.all():
        for split in table["split"].unique():
            in_split = (table["split"] == split).to_numpy()
            _keep_rows(array_path(root, split), kept[in_split])
    return table[kept].reset_index(drop=True), rejections_frame(rejections)


def _keep_rows(path: Path, keep: np.ndarray) -> None:
    """Rewrite the array at ``path`` with only the rows where ``keep`` is true (the rows of rejected
    hands are removed)."""
    if keep.all():
        return
    old = np.load(path, mmap_mode="r")
    compacted = path.with_suffix(".compacted.npy")
    new = np.lib.format.open_memmap(
        compacted, mode="w+", dtype=np.uint8, shape=(int(keep.sum()), *old.shape[1:])
    )
    for start, row in enumerate(np.flatnonzero(keep)):
        new[start] = old[row]
    new.flush()
    del new, old
    os.replace(compacted, path)


def _run_jobs(jobs: list[_CropJob], workers: int) -> list[str | None]:
    progress = {"total": len(jobs), "desc": "cropping", "unit": "img", "mininterval": 1.0}
    if workers <= 1:
        return [_run_job(job) for job in tqdm(jobs, **progress)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(
            tqdm(pool.map(_run_job, jobs, chunksize=max(1, min(64, len(jobs) // (8 * workers)))), **progress)
        )
