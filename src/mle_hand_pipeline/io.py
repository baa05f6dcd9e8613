"""Catalog dataset types the project adds to kedro-datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset

from mle_hand_pipeline.datasets.crop_store import MANIFEST, CropStore
from mle_hand_pipeline.datasets.cropping import CropPlan


class FolderDataset(AbstractDataset[Path, Path]):
    """A folder of many files that nodes read or write themselves; it loads as its ``Path``.

    Saving checks that the node wrote the folder the catalog names (the node returns the path it
    wrote), so the folder is a node output in the pipeline graph.
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> Path:
        return self._path

    def save(self, data: Path) -> None:
        if Path(data) != self._path:
            raise ValueError(
                f"the node wrote {data}, but its catalog entry names the folder {self._path}: "
                "make the parameter and the catalog entry agree"
            )

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class CropStoreDataset(AbstractDataset[CropPlan, CropStore]):
    """A preprocessing run's crops (JPEG files and uint8 split arrays) with their hand table, as one
    folder (:mod:`mle_hand_pipeline.datasets.crop_store`).

    Saving a :class:`CropPlan` writes the crops (tens of thousands of files, in a process pool) into
    ``<path>.tmp-<pid>`` and switches the folder in when complete; loading gives a :class:`CropStore`
    (which is also the folder's path for code that reads the JPEG files).
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> CropStore:
        return CropStore(self._path)

    def save(self, data: CropPlan) -> None:
        data.write(self._path)

    def _exists(self) -> bool:
        return (self._path / MANIFEST).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
