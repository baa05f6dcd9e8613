"""What the readers hand to the crop stage: one row per hand, and one row per rejected input.

Readers never drop anything silently: every sample or hand they cannot use becomes a
:class:`Rejection` with a reason code and a message naming the file or sample, unless the policy is
``raise``, in which case the same message is raised as a :class:`BadSampleError`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd

OnBadSample = Literal["raise", "skip"]

# Reason codes used in the preprocessing summary.
TOO_FEW_VISIBLE = "too_few_visible"
BAD_ANNOTATION = "bad_annotation"
MISSING_IMAGE = "missing_image"
UNREADABLE_IMAGE = "unreadable_image"
ZERO_SIZE_HAND = "zero_size_hand"  # all visible keypoints at one point: no scale to normalise errors by

# Which hand of which image: carried unchanged from the readers' rows to the hand table.
IDENTITY_COLUMNS = ["dataset", "split", "sample_id", "image_id", "version", "side", "source_image"]
ANNOTATION_COLUMNS = [*IDENTITY_COLUMNS, "keypoints_source", "visible"]
REJECTION_COLUMNS = ["dataset", "split", "sample_id", "image_id", "side", "reason", "detail"]


class BadSampleError(ValueError):
    """An input sample is unusable; the message names the file or sample and what is wrong."""


@dataclass(frozen=True)
class Rejection:
    dataset: str
    split: str
    sample_id: int
    image_id: int
    side: str
    reason: str
    detail: str


def reject_or_raise(rejection: Rejection, on_bad_sample: OnBadSample, rejections: list[Rejection]) -> None:
    """Record ``rejection``, or raise it when the policy is ``raise``."""
    if on_bad_sample == "raise":
        raise BadSampleError(f"{rejection.detail} (set on_bad_sample: skip to skip and count such samples)")
    if on_bad_sample != "skip":
        raise ValueError(f"on_bad_sample must be 'raise' or 'skip', got {on_bad_sample!r}")
    rejections.append(rejection)


def rejections_frame(rejections: list[Rejection]) -> pd.DataFrame:
    return pd.DataFrame([asdict(r) for r in rejections], columns=REJECTION_COLUMNS)


def check_finite_array(value: object, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``value`` as a float64 array of ``shape`` with finite entries, else ValueError naming ``what``."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} is not numeric ({error})") from error
    if array.shape != shape:
        raise ValueError(f"{what} has shape {array.shape}, expected {shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return array


def stack_column(column: pd.Series) -> np.ndarray:
    """A table column of per-row arrays (e.g. (21, 2) keypoints, 21 booleans, (T, 21, 2) predictions) as
    one (N, ...) array.

    Parquet hands nested lists back as object arrays of arrays (one level per list depth); in memory
    they may be lists.
    """

    def dense(value):
        if isinstance(value, np.ndarray) and value.dtype == object:
            return np.stack([dense(v) for v in value])
        return np.asarray(value)

    return np.stack([dense(v) for v in column])


def filter_visible(annotations: pd.DataFrame, min_visible: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hands with at least ``min_visible`` visible keypoints (re-indexed), and the others as rejections
    (reason :data:`TOO_FEW_VISIBLE`, in :data:`REJECTION_COLUMNS`)."""
    n_visible = np.array([int(np.sum(v)) for v in annotations["visible"]], dtype=int)
    keep = n_visible >= min_visible
    dropped = annotations[~keep]
    rejections = pd.DataFrame(
        {
            "dataset": dropped["dataset"],
            "split": dropped["split"],
            "sample_id": dropped["sample_id"],
            "image_id": dropped["image_id"],
            "side": dropped["side"],
            "reason": TOO_FEW_VISIBLE,
            "detail": [f"{n} visible keypoints < min_visible={min_visible}" for n in n_visible[~keep]],
        },
        columns=REJECTION_COLUMNS,
    )
    return annotations[keep].reset_index(drop=True), rejections.reset_index(drop=True)
