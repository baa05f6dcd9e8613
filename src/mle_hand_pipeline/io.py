"""Catalog dataset types the project adds to kedro-datasets."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, AbstractVersionedDataset, DatasetError, Version

from mle_hand_pipeline.datasets.crop_store import MANIFEST, CropStore
from mle_hand_pipeline.datasets.cropping import CropPlan

logger = logging.getLogger(__name__)


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
        # Kedro may hand the catalog path over absolute (project root) while the node wrote a relative one.
        if Path(data).resolve() != self._path.resolve():
            raise ValueError(
                f"the node wrote {data}, but its catalog entry names the folder {self._path}: "
                "make the parameter and the catalog entry agree"
            )

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


class CheckpointDataset(AbstractVersionedDataset[Path, Path]):
    """A model checkpoint file (``best.pt``/``last.pt``, see ``training/checkpoint.py``) as a catalog
    dataset, so the trained model is a node output (``kedro viz``: crops -> model -> metrics).

    ``save(path)`` publishes the checkpoint at ``path`` (a training run's folder) under ``filepath``,
    by a hard link (a copy where links are impossible) moved into place: atomic, no second copy of
    the weights, and never over another run's file. ``load()`` returns the published file's path (load
    it with ``load_model``): the one this process saved, so concurrent runs each evaluate their own
    model; otherwise the newest version, or the one given with ``--load-versions``. Versioned: every
    run publishes a new file. Kedro's save version is the time its session started, to the
    millisecond, so two runs a grid starts together can share it: the second publishes under
    ``<version>_<pid>`` (newer than ``<version>`` for the newest-version load) and says so in the log.
    """

    def __init__(self, filepath: str, version: Version | None = None, metadata: dict[str, Any] | None = None):
        super().__init__(PurePosixPath(filepath), version, exists_function=lambda p: Path(p).exists())
        self.metadata = metadata
        self._saved: Path | None = None

    def load(self) -> Path:
        if self._saved is not None:
            return self._saved
        path = Path(self._get_load_path())
        if not path.is_file():
            raise DatasetError(f"no checkpoint at {path}: train a model first")
        return path

    def save(self, data: Path) -> None:
        source, version = Path(data), self.resolve_save_version()
        if not source.is_file():
            raise DatasetError(f"cannot publish {source} under {self._filepath}: not a file")
        for candidate in (version, f"{version}_{os.getpid()}"):
            target = Path(self._get_versioned_path(candidate))
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.parent / f".{target.name}.{os.getpid()}.tmp"
            temporary.unlink(missing_ok=True)
            try:
                os.link(source, temporary)
            except OSError:  # another file system, or links not supported
                shutil.copy2(source, temporary)
            if _move_unless_taken(temporary, target):
                if candidate != version:
                    logger.warning(
                        "%s: version %s is another run's (its session started in the same millisecond); "
                        "published as %s",
                        self._filepath,
                        version,
                        candidate,
                    )
                self._saved = target
                return
            temporary.unlink()
        raise DatasetError(
            f"cannot publish {source} under {self._filepath}: versions {version} and {version}_{os.getpid()} "
            "are both taken"
        )

    def _exists(self) -> bool:
        try:
            return Path(self._get_load_path()).is_file()
        except DatasetError:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}


def _move_unless_taken(source: Path, target: Path) -> bool:
    """Move ``source`` to ``target`` unless ``target`` exists (atomic against other processes);
    False, and ``source`` left in place, when it does."""
    try:
        os.link(source, target)
    except FileExistsError:
        return False
    except OSError:  # no hard links on this file system: claim the name, then move the file onto it
        try:
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        os.replace(source, target)
        return True
    source.unlink()
    return True


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
