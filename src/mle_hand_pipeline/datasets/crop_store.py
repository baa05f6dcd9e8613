"""The preprocessed crops of one dataset as one folder that is replaced whole, never edited in place.

Layout of a crop store (``data/02_intermediate/<dataset>_crops``)::

    manifest.json          format, crop size, and per split its row count and table fingerprint
    hands.parquet          the hand table the crops were made for (row i of a split = row i of its array)
    rejections.parquet     hands rejected at crop time (zero-size box; unreadable image if skipped)
    arrays/<split>.npy     (N, S, S, 3) uint8: the decoded JPEG pixels, for loaders (memory-mapped)
    <split>_<S>/<image_id>_<side>.jpg   the crops as images, for people to look at

A store is written into ``<folder>.tmp-<pid>`` and switched in by :func:`commit_folder` only when
complete, so a run that fails half-way leaves the previous store exactly as it was. The hand table that
training reads (``<dataset>_hands``) is saved by Kedro after the store is switched; :meth:`CropStore.rows`
checks the two still agree (a stale table is a clear error, not mislabelled crops).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

MANIFEST = "manifest.json"
TABLE = "hands.parquet"
REJECTIONS = "rejections.parquet"
ARRAYS = "arrays"
FORMAT_VERSION = 1

# What decides a crop's pixels: where it is stored and which box of which source image it shows.
# Labels (keypoints, visibility) are not part of it, so label noise on a training table still matches.
GEOMETRY_COLUMNS = (
    "split",
    "crop_path",
    "crop_size",
    "source_image",
    "box_x0",
    "box_y0",
    "box_side",
    "mirrored",
)


class StaleCropStoreError(ValueError):
    """The hand table and the crop store come from different preprocessing runs."""


def table_fingerprint(table: pd.DataFrame) -> str:
    """sha256 over the rows' :data:`GEOMETRY_COLUMNS`, in order (floats by their exact ``repr``)."""
    digest = hashlib.sha256()
    for row in table[list(GEOMETRY_COLUMNS)].itertuples(index=False):
        digest.update(("\t".join(repr(v) if isinstance(v, float) else str(v) for v in row) + "\n").encode())
    return digest.hexdigest()


def array_path(root: str | os.PathLike, split: str) -> Path:
    return Path(root) / ARRAYS / f"{split}.npy"


def staging_folder(final: str | os.PathLike) -> Path:
    """A fresh ``<final>.tmp-<pid>`` next to ``final`` (same file system, so the switch is a rename).

    Leftovers of killed runs (``<final>.tmp-<pid>`` of a process that no longer exists) are removed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for leftover in final.parent.glob(f"{final.name}.tmp-*"):
        pid = leftover.name.rpartition("-")[2]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)
    staging = final.parent / f"{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def commit_folder(staging: str | os.PathLike, final: str | os.PathLike) -> None:
    """Replace ``final`` by the complete folder ``staging``: two renames, then the old one is deleted.

    Between the renames (microseconds) ``final`` does not exist; a crash exactly there leaves the old
    store in ``<final>.old-<pid>`` and the new one in ``staging``, both complete (:class:`CropStore`
    says so).
    """
    staging, final = Path(staging), Path(final)
    _fsync_tree(staging)
    old = final.parent / f"{final.name}.old-{os.getpid()}"
    if final.exists() or final.is_symlink():
        os.replace(final, old)
    os.replace(staging, final)
    _fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    """Flush every file of ``root`` to disk, so the renamed folder never holds half-written files."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(Path(folder) / name, "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(folder))


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_manifest(root: Path, table: pd.DataFrame, crop_size: int, image_format: str) -> None:
    """``manifest.json`` of a store whose table and arrays are written (deterministic: no dates, no pids)."""
    splits = {
        split: {"n": len(rows), "fingerprint": table_fingerprint(rows)}
        for split, rows in table.groupby("split", sort=True)
    }
    manifest = {
        "format": FORMAT_VERSION,
        "crop_size": int(crop_size),
        "image_format": image_format,
        "table_fingerprint": table_fingerprint(table),
        "splits": splits,
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))


class CropStore(os.PathLike):
    """A committed crop store (see the module docstring); also usable as the path of its folder.

    ``os.fspath(store)`` is the folder, so code that joins ``crop_path`` onto it reads the JPEG crops.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        manifest = self.root / MANIFEST
        if not manifest.is_file():
            raise FileNotFoundError(self._missing_message())
        self.manifest = json.loads(manifest.read_text())
        if self.manifest.get("format") != FORMAT_VERSION:
            raise ValueError(f"{manifest}: crop store format {self.manifest.get('format')}, expected "
                             f"{FORMAT_VERSION}; re-run preprocessing")  # fmt: skip
        self.crop_size = int(self.manifest["crop_size"])
        self._table: pd.DataFrame | None = None

    def __fspath__(self) -> str:
        return str(self.root)

    def __str__(self) -> str:  # the folder, as str(path) gives (nodes pass it on as a path)
        return str(self.root)

    def __repr__(self) -> str:
        return f"CropStore({str(self.root)!r})"

    def _missing_message(self) -> str:
        leftovers = sorted(p.name for p in self.root.parent.glob(f"{self.root.name}.*-*"))
        hint = f" (found {', '.join(leftovers)}: a switch was interrupted)" if leftovers else ""
        return (
            f"no crop store at {self.root}{hint}: run the preprocessing pipeline "
            "(kedro run --pipelines=<dataset>_preprocess)"
        )

    @property
    def table(self) -> pd.DataFrame:
        """The hand table the crops were made for."""
        if self._table is None:
            self._table = pd.read_parquet(self.root / TABLE)
        return self._table

    @property
    def rejections(self) -> pd.DataFrame:
        return pd.read_parquet(self.root / REJECTIONS)

    def array(self, split: str) -> np.ndarray:
        """(N, S, S, 3) uint8 crops of ``split``, memory-mapped read-only."""
        if split not in self.manifest["splits"]:
            raise KeyError(f"{self.root}: no '{split}' crops; splits: {sorted(self.manifest['splits'])}")
        pixels = np.load(array_path(self.root, split), mmap_mode="r", allow_pickle=False)
        expected = (self.manifest["splits"][split]["n"], self.crop_size, self.crop_size, 3)
        if pixels.shape != expected or pixels.dtype != np.uint8:
            raise ValueError(f"{array_path(self.root, split)}: {pixels.dtype} {pixels.shape}, expected "
                             f"uint8 {expected}; re-run preprocessing")  # fmt: skip
        return pixels

    def rows(self, table: pd.DataFrame) -> tuple[str, np.ndarray]:
        """(split, row of each of ``table``'s crops in that split's array), checking ``table`` against
        the store: same crop files made from the same boxes, else :class:`StaleCropStoreError`.

        ``table`` holds rows of one split: the whole split in order (compared by fingerprint) or any
        subset of it (compared row by row).
        """
        splits = table["split"].unique()
        if len(splits) != 1:
            raise ValueError(f"rows of one split at a time, got {sorted(splits)}")
        split = str(splits[0])
        if split not in self.manifest["splits"]:
            raise StaleCropStoreError(self._stale(f"it has no '{split}' crops"))
        entry = self.manifest["splits"][split]
        if len(table) == entry["n"] and table_fingerprint(table) == entry["fingerprint"]:
            return split, np.arange(len(table))
        stored = self.table[self.table["split"] == split].reset_index(drop=True)
        position = pd.Series(np.arange(len(stored)), index=stored["crop_path"])
        missing = ~table["crop_path"].isin(position.index)
        if missing.any():
            raise StaleCropStoreError(self._stale(f"it has no crop {table['crop_path'][missing].iloc[0]}"))
        rows = position[table["crop_path"]].to_numpy()
        mine = table[list(GEOMETRY_COLUMNS)].reset_index(drop=True)
        theirs = stored.loc[rows, list(GEOMETRY_COLUMNS)].reset_index(drop=True)
        differs = (mine != theirs).any(axis=1)
        if differs.any():
            first = int(np.flatnonzero(differs.to_numpy())[0])
            raise StaleCropStoreError(
                self._stale(f"crop {mine['crop_path'][first]} was made from another box or image")
            )
        return split, rows

    def _stale(self, what: str) -> str:
        return (
            f"the hand table does not match the crop store {self.root} ({what}): they come from "
            "different preprocessing runs; re-run preprocessing"
        )
