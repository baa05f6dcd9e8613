"""The training/evaluation dataset: preprocessed crops and their labels, no randomness.

Augmentation happens on whole batches on the training device (:mod:`.augment`), so the loader only
fetches pixels; that keeps workers cheap and makes every epoch's batches independent of worker count.
Pixels come from the crop store's uint8 split array (memory-mapped, no decoding), each crop checked
against its CRC-32 as it is read; the same crops decoded from their JPEG files are bit-identical (the
array holds the decoded files).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import BatchSampler, Dataset, Sampler

from mle_hand_pipeline.datasets.crop_store import CropStore
from mle_hand_pipeline.datasets.records import stack_column


class HandCrops(Dataset):
    """Crops listed in a preprocessing table (``rhd.hands`` / ``freihand.hands``), usually one split.

    Args:
        table: rows of the hand table (labels may differ from the store's, e.g. label noise; the crop
            files and boxes must be the store's, else ``StaleCropStoreError``).
        crops: the crop store (or its folder) the table was made with.
        decode_jpeg: read each crop from its JPEG file instead of the array (for checks and people).

    Item ``i`` is a dict:
        image: (3, S, S) uint8, the crop (S = ``crop_size``).
        keypoints: (K, 2) float32, crop pixels.
        visible: (K,) bool.
        hand_size: () float32, max(w, h) of the visible keypoints' box in crop pixels.
        index: () int64, row of the table.
    """

    def __init__(self, table: pd.DataFrame, crops: CropStore | str | os.PathLike, decode_jpeg: bool = False):
        if table.empty:
            raise ValueError("no crops in this split: check the preprocessing summary")
        self.store = crops if isinstance(crops, CropStore) else CropStore(crops)
        sizes = table["crop_size"].unique()
        if len(sizes) != 1:
            raise ValueError(f"crops of several sizes in one table: {sorted(sizes)}; re-run preprocessing")
        self.crop_size = int(sizes[0])
        # Item i is row self.rows[i] of split self.splits[i]'s array.
        self.splits = table["split"].astype(str).to_numpy()
        self.rows = np.empty(len(table), dtype=np.int64)
        for split in np.unique(self.splits):
            in_split = self.splits == split
            _, self.rows[in_split] = self.store.rows(table[in_split])
            if not decode_jpeg:
                self.store.verify(split)  # before the first batch: a damaged array names its file here
        self.decode_jpeg = decode_jpeg
        self.paths = [str(self.store.root / path) for path in table["crop_path"]]
        self.keypoints = torch.from_numpy(stack_column(table["keypoints_crop"]).astype(np.float32))
        self.visible = torch.from_numpy(stack_column(table["visible"]).astype(bool))
        self.hand_size = torch.from_numpy(table["hand_size"].to_numpy(np.float32))
        self._arrays: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict:
        # A memmap pickles as a full in-memory copy: workers started by spawn reopen the files instead.
        return {**self.__dict__, "_arrays": {}}

    def _array(self, split: str) -> np.ndarray:
        """(N_split, S, S, 3) uint8 memmap of ``split``, opened once per process."""
        if split not in self._arrays:
            self._arrays[split] = self.store.array(split)
        return self._arrays[split]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.decode_jpeg:
            pixels = self._decode(self.paths[index])
        else:
            split, row = self.splits[index], self.rows[index]
            pixels = np.array(self._array(split)[row])  # writable, as torch expects
            self.store.check_crop(split, row, pixels)
        return {
            "image": torch.from_numpy(pixels).permute(2, 0, 1),
            "keypoints": self.keypoints[index],
            "visible": self.visible[index],
            "hand_size": self.hand_size[index],
            "index": torch.tensor(index),
        }

    @staticmethod
    def _decode(path: str) -> np.ndarray:
        try:
            with Image.open(path) as file:
                return np.array(file.convert("RGB"))
        except OSError as error:
            raise RuntimeError(f"cannot read crop {path}: {error} (re-run preprocessing)") from error

    def images(self, device: torch.device) -> torch.Tensor:
        """All of this table's crops as one (N, 3, S, S) uint8 tensor on ``device`` (rows in table order)."""
        pixels = np.empty((len(self), self.crop_size, self.crop_size, 3), dtype=np.uint8)
        for split in np.unique(self.splits):
            in_split = self.splits == split
            pixels[in_split] = self._array(split)[self.rows[in_split]]
            for position, row in zip(np.flatnonzero(in_split), self.rows[in_split], strict=True):
                self.store.check_crop(split, row, pixels[position])
        return (
            torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous().to(device)
        )  # transposed once, on the host


def fits_on_device(dataset: HandCrops, device: torch.device, share: float = 0.25) -> bool:
    """Whether ``dataset``'s crops take less than ``share`` of ``device``'s free memory (CUDA only)."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return len(dataset) * dataset.crop_size**2 * 3 < share * free


class DeviceBatches:
    """Batches gathered by index from crops held on the training device: what a ``DataLoader`` over
    ``dataset`` with ``sampler`` and ``batch_size`` yields (same order, same values), without workers.

    ``sampler`` is used live, so ``sampler.set_epoch`` works as with a ``DataLoader``.
    """

    def __init__(self, dataset: HandCrops, sampler: Sampler, batch_size: int, device: torch.device):
        self.batch_size = batch_size
        self.batches = BatchSampler(sampler, batch_size, drop_last=True)
        self.images = dataset.images(device)
        self.keypoints = dataset.keypoints.to(device)
        self.visible = dataset.visible.to(device)
        self.hand_size = dataset.hand_size.to(device)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        # The epoch's indices go to the device in one copy: a copy per step would wait for the GPU queue.
        epoch = torch.tensor(list(self.batches), dtype=torch.int64).view(-1, self.batch_size)
        for index in epoch.to(self.images.device):
            yield {
                "image": self.images[index],
                "keypoints": self.keypoints[index],
                "visible": self.visible[index],
                "hand_size": self.hand_size[index],
                "index": index,
            }
