"""Catalog dataset types the project adds to kedro-datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset


class FolderDataset(AbstractDataset[Path, Path]):
    """A folder of many files that nodes read or write themselves; it loads as its ``Path``.

    Tens of thousands of crops are too many for one Kedro dataset per file (slow catalog start-up),
    and writing them in a process pool needs a plain path. This keeps that path in the catalog.
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> Path:
        return self._path

    def save(self, data: Path) -> None:
        if Path(data) != self._path:
            raise ValueError(f"FolderDataset {self._path} cannot be saved as another folder ({data})")

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class TorchCheckpointDataset(AbstractDataset[dict, dict]):
    """A checkpoint file: saved atomically with ``torch.save``, loaded with ``weights_only=True``.

    Holds tensors and plain containers only (e.g. a backbone checkpoint), never pickled code.
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    # torch is imported on use: the catalog builds every dataset at start-up, most runs need none of these.
    def load(self) -> dict:
        from mle_hand_pipeline.training.checkpoint import load_checkpoint

        return load_checkpoint(self._filepath)

    def save(self, data: dict) -> None:
        from mle_hand_pipeline.training.checkpoint import save_atomic

        save_atomic(data, self._filepath)

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
