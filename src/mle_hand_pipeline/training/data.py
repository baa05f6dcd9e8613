"""The training/evaluation dataset: preprocessed crops and their labels, no randomness.

Augmentation happens on whole batches on the training device (:mod:`.augment`), so the loader only
decodes files; that keeps workers cheap and makes every epoch's batches independent of worker count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from mle_hand_pipeline.datasets.records import stack_column


class HandCrops(Dataset):
    """Crops listed in a preprocessing table (``rhd.hands`` / ``freihand.hands``).

    Item ``i`` is a dict:
        image: (3, S, S) uint8, the crop as written (S = ``crop_size``).
        keypoints: (K, 2) float32, crop pixels.
        visible: (K,) bool.
        hand_size: () float32, max(w, h) of the visible keypoints' box in crop pixels.
        index: () int64, row of the table.
    """

    def __init__(self, table: pd.DataFrame, crops_dir: str | Path):
        if table.empty:
            raise ValueError("no crops in this split: check the preprocessing summary")
        self.crops_dir = Path(crops_dir)
        self.paths = [str(self.crops_dir / path) for path in table["crop_path"]]
        self.keypoints = torch.from_numpy(stack_column(table["keypoints_crop"]).astype(np.float32))
        self.visible = torch.from_numpy(stack_column(table["visible"]).astype(bool))
        self.hand_size = torch.from_numpy(table["hand_size"].to_numpy(np.float32))
        sizes = table["crop_size"].unique()
        if len(sizes) != 1:
            raise ValueError(f"crops of several sizes in one table: {sorted(sizes)}; re-run preprocessing")
        self.crop_size = int(sizes[0])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        path = self.paths[index]
        try:
            with Image.open(path) as file:
                pixels = np.array(file.convert("RGB"))  # a writable copy, as torch expects
        except OSError as error:
            raise RuntimeError(f"cannot read crop {path}: {error} (re-run preprocessing)") from error
        return {
            "image": torch.from_numpy(pixels).permute(2, 0, 1),
            "keypoints": self.keypoints[index],
            "visible": self.visible[index],
            "hand_size": self.hand_size[index],
            "index": torch.tensor(index),
        }
