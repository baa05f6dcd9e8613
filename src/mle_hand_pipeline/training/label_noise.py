"""Reproducible corruption of TRAINING keypoint labels, to test robustness with known ground truth.

Two kinds of label noise, drawn once per training table from a seeded generator (the same settings
and seed give the same corrupted labels for every method, so a comparison sees identical labels):

- jitter: ``round(fraction * M)`` of the ``M`` visible keypoints move by a Gaussian offset with
  standard deviation ``jitter_px`` per coordinate;
- gross outliers: another, disjoint ``round(outlier_fraction * M)`` visible keypoints are replaced by
  a point drawn uniformly in the crop ``[0, crop_size)^2``.

Units are pixels of the STORED crops (``crop_size`` of the hand table, e.g. 256), i.e. the
``keypoints_crop`` column; ``keypoints_source`` is updated through each row's crop box so the two
columns stay consistent. Only visible keypoints are touched (invisible ones never enter the loss).
Apply this to the training split only: validation and test labels stay clean.

Plain numpy and pandas; no Kedro, no torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from mle_hand_pipeline.datasets.crops import CropBox, crop_to_source
from mle_hand_pipeline.datasets.records import stack_column


@dataclass(frozen=True)
class LabelNoise:
    """The ``train.label_noise`` parameter block. All zero (the default) means clean labels.

    fraction: share of the visible training keypoints that get Gaussian jitter.
    jitter_px: standard deviation of that jitter per coordinate, in stored-crop pixels.
    outlier_fraction: share of the visible training keypoints replaced by a uniform point in the crop
        (disjoint from the jittered ones; ``fraction + outlier_fraction <= 1``).
    seed: seed of the generator that picks the keypoints and draws the noise.
    """

    fraction: float = 0.0
    jitter_px: float = 0.0
    outlier_fraction: float = 0.0
    seed: int = 0

    def __post_init__(self):
        for name in ("fraction", "outlier_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"label_noise.{name} must be in [0, 1], got {value}")
        if self.fraction + self.outlier_fraction > 1.0:
            raise ValueError(
                f"label_noise.fraction + outlier_fraction must be <= 1, got "
                f"{self.fraction} + {self.outlier_fraction}"
            )
        if self.jitter_px < 0:
            raise ValueError(f"label_noise.jitter_px must be >= 0, got {self.jitter_px}")

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> LabelNoise:
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(params or {}) - set(known))
        if unknown:
            raise ValueError(f"label_noise has no key {', '.join(unknown)}; its keys: {', '.join(known)}")
        return cls(**(params or {}))

    @property
    def active(self) -> bool:
        return (self.fraction > 0 and self.jitter_px > 0) or self.outlier_fraction > 0


def corrupt_labels(table: pd.DataFrame, noise: LabelNoise) -> tuple[pd.DataFrame, dict[str, float]]:
    """A copy of the hand table with corrupted ``keypoints_crop`` (and ``keypoints_source``).

    Args:
        table: hand table (columns of ``datasets.cropping.HAND_COLUMNS``), normally the train split.
        noise: the settings.

    Returns:
        ``(corrupted copy, stats)``; ``stats`` holds the settings and ``n_visible``, ``n_jittered``,
        ``n_outliers``, ``mean_shift_px`` (mean label displacement over ALL visible keypoints, crop
        pixels), ``mean_jitter_shift_px``, ``mean_outlier_shift_px`` and ``label_nme`` (the NME of the
        corrupted labels against the clean ones, normalised by each crop's ``hand_size``, i.e. what a
        model that reproduced the noisy labels exactly would score).
    """
    out = table.copy()
    clean = stack_column(table["keypoints_crop"]).astype(np.float64)  # (N, K, 2)
    visible = stack_column(table["visible"]).astype(bool)
    rows, cols = np.nonzero(visible)  # row-major: a fixed order for a given table
    m = rows.size
    n_jitter = round(noise.fraction * m) if noise.jitter_px > 0 else 0
    n_outliers = round(noise.outlier_fraction * m)
    rng = np.random.default_rng(noise.seed)
    chosen = rng.permutation(m)
    jitter_idx, outlier_idx = chosen[:n_jitter], chosen[n_jitter : n_jitter + n_outliers]
    noisy = clean.copy()
    noisy[rows[jitter_idx], cols[jitter_idx]] += rng.normal(0.0, noise.jitter_px, (n_jitter, 2))
    sizes = table["crop_size"].to_numpy(np.float64)[rows[outlier_idx]]
    noisy[rows[outlier_idx], cols[outlier_idx]] = rng.uniform(0.0, 1.0, (n_outliers, 2)) * sizes[:, None]

    shift = np.linalg.norm(noisy - clean, axis=-1)  # (N, K)
    hand_size = table["hand_size"].to_numpy(np.float64)
    stats = {
        **{k: float(v) for k, v in asdict(noise).items()},
        "n_visible": float(m),
        "n_jittered": float(n_jitter),
        "n_outliers": float(n_outliers),
        "mean_shift_px": float(shift[visible].mean()) if m else 0.0,
        "mean_jitter_shift_px": float(shift[rows[jitter_idx], cols[jitter_idx]].mean()) if n_jitter else 0.0,
        "mean_outlier_shift_px": (
            float(shift[rows[outlier_idx], cols[outlier_idx]].mean()) if n_outliers else 0.0
        ),
        "label_nme": float((shift / hand_size[:, None])[visible].mean()) if m else 0.0,
    }
    if n_jitter + n_outliers == 0:
        return out, stats
    out["keypoints_crop"] = list(noisy)
    out["keypoints_source"] = [
        crop_to_source(points, CropBox(row.box_x0, row.box_y0, row.box_side), row.crop_size, row.mirrored)
        for points, row in zip(noisy, table.itertuples(index=False), strict=True)
    ]
    return out, stats
