"""The preprocessed crops of one dataset as one folder that is replaced whole, never edited in place.

Layout of a crop store (``data/02_intermediate/<dataset>_crops``)::

    manifest.json          format, crop size, and per split its row count, table fingerprint and
                           array record (bytes, shape, dtype, sha256 of the file, sha256 of sampled blocks,
                           sha256 of the per-crop checksum file)
    hands.parquet          the hand table the crops were made for (row i of a split = row i of its array)
    rejections.parquet     hands rejected at crop time (zero-size box; unreadable image if skipped)
    arrays/<split>.npy     (N, S, S, 3) uint8: the decoded JPEG pixels, for loaders (memory-mapped)
    arrays/<split>.crc32.npy  (N,) uint32: the CRC-32 of each crop's pixels, checked as a loader reads it
    <split>_<S>/<image_id>_<side>.jpg   the crops as images, for people to look at

A store is written into ``<folder>.tmp-<pid>`` and switched in by :func:`commit_folder` only when
complete, so a run that fails half-way leaves the previous store exactly as it was. The hand table that
training reads (``<dataset>_hands``) is saved by Kedro after the store is switched; :meth:`CropStore.rows`
checks the two still agree (a stale table is a clear error, not mislabelled crops).

Every reader checks a split's array before using it (:meth:`CropStore.verify`): its size and ``.npy``
header against the manifest and a sha256 of :data:`SAMPLE_BLOCKS` blocks spread over the file (4 MiB
read per split: catches a truncated, emptied, zero-filled or overwritten array); ``full=True``
(``train.verify_crops: full``) hashes every byte against the manifest's sha256. Every crop a loader
reads is then checked against its own CRC-32 (:meth:`CropStore.check_crop`; about 50 us per 256-px
crop), so a changed byte anywhere in a crop that is used stops the run naming the file and the crop.
A damaged array is a :class:`DamagedCropStoreError` naming the file and saying to re-run preprocessing.

Measured on the full-size RHD store (14.0 GB of arrays, ``shared/tools/scale``; 2-core AMD EPYC VM
with SHA-NI, other jobs running): the quick check of all three splits 64 ms from disk, 11 ms cached;
the full check 25 s from disk (560 MB/s), about 10 s cached (1.4 GB/s); hashing at preprocessing
added about 23 s to a 23 min run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

try:
    import fcntl
except ImportError:  # Windows: no writer lock
    fcntl = None

logger = logging.getLogger(__name__)

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


SAMPLE_BLOCKS = 64  # blocks the quick check hashes, spread evenly over the file
SAMPLE_BLOCK_BYTES = 1 << 16
_CHUNK = 16 << 20  # bytes per read of the full hash


class StaleCropStoreError(ValueError):
    """The hand table and the crop store come from different preprocessing runs."""


class CropStoreBusyError(RuntimeError):
    """Another process writes the crop store, or reads the one a preprocessing run would replace (see
    :func:`writer_lock`, :func:`reader_lock`)."""


def lock_path(final: str | os.PathLike) -> Path:
    return Path(final).parent / f"{Path(final).name}.lock"


def open_locked(path: Path, operation: int) -> Any:
    """``path`` opened for appending and locked with ``operation`` (``LOCK_EX`` or ``LOCK_SH``, without
    waiting); the open file, or None when another process holds a conflicting lock. A lock file removed
    by its previous holder after we opened it is opened again (the lock must be on the file at ``path``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, operation | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        try:
            same = os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return handle
        handle.close()
    raise CropStoreBusyError(f"{path}: the lock file keeps being replaced")  # pragma: no cover


def _holders(path: Path) -> tuple[str | None, list[str]]:
    """(the writer's line, the lines of readers still running) in the lock file ``path``."""
    try:
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return None, []
    writer = next((line for line in lines if line.startswith("pid ")), None)
    readers = []
    for line in lines:
        match = re.match(r"reader pid (\d+)", line)
        if match and _running(int(match[1])):
            readers.append(line.removeprefix("reader "))
    return writer, readers


@contextlib.contextmanager
def writer_lock(final: str | os.PathLike) -> Iterator[None]:
    """Hold ``<final>.lock`` exclusively while a preprocessing run writes the store ``final`` and reads it
    back (its figures), so it never replaces crops that another run reads or writes: it stops at once with
    :class:`CropStoreBusyError` naming the other run (a writer, or the runs holding :func:`reader_lock`).
    The file is removed, still locked, at the end (a lock left by a killed process is free: the system
    releases it). No-op without ``fcntl``."""
    if fcntl is None:  # pragma: no cover (Windows)
        yield
        return
    path = lock_path(final)
    handle = open_locked(path, fcntl.LOCK_EX)
    if handle is None:
        writer, readers = _holders(path)
        if readers:
            raise CropStoreBusyError(
                f"{final} is being read by {'; '.join(readers)}: preprocessing would replace the crops under "
                f"it; wait for it to end (or stop it), then run again; lock {path}"
            )
        raise CropStoreBusyError(
            f"another preprocessing run ({writer or 'unknown'}) is writing {final}: wait for it to end, then "
            f"run again (two runs on one output would replace each other's crops); lock {path}"
        )
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        yield
    finally:
        path.unlink(missing_ok=True)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


@contextlib.contextmanager
def reader_lock(final: str | os.PathLike, reader: str) -> Iterator[None]:
    """Hold ``<final>.lock`` shared while a run (training, evaluation, a grid cell) reads the store
    ``final``, so preprocessing cannot replace it under the run (:func:`writer_lock` is refused, naming
    ``reader``, e.g. the command); readers do not exclude each other. While preprocessing writes the
    store, :class:`CropStoreBusyError` names it. No-op without ``fcntl``."""
    if fcntl is None:  # pragma: no cover (Windows)
        yield
        return
    path = lock_path(final)
    handle = open_locked(path, fcntl.LOCK_SH)
    if handle is None:
        writer, _ = _holders(path)
        raise CropStoreBusyError(
            f"preprocessing ({writer or 'unknown'}) is writing {final}: wait for it to end, then run again "
            f"(the run would read a store being replaced); lock {path}"
        )
    try:
        # One appended line (O_APPEND: whole lines, whatever other readers write) for the writer's message.
        handle.write(f"reader pid {os.getpid()} ({reader}), since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


class DamagedCropStoreError(ValueError):
    """A split array is not what preprocessing wrote (truncated, emptied, overwritten, bad header)."""


def _byte_bar(size: int, desc: str, progress: bool | None) -> tqdm:
    """A progress bar over ``size`` bytes, shown for files over 1 GiB unless ``progress`` says."""
    shown = size > (1 << 30) if progress is None else progress
    return tqdm(total=size, unit="B", unit_scale=True, desc=desc, disable=not shown, mininterval=1.0)


def file_sha256(path: str | os.PathLike, progress: bool | None = None) -> str:
    """sha256 of the whole file, read in chunks (a progress bar for files over 1 GiB unless ``progress``)."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256()
    with (
        open(path, "rb") as handle,
        _byte_bar(size, f"sha256 {path.name}", progress) as bar,
    ):
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def sampled_sha256(
    path: str | os.PathLike,
    size: int | None = None,
    blocks: int | None = None,
    block_bytes: int | None = None,
) -> str:
    """sha256 of ``blocks`` blocks of ``block_bytes`` (default :data:`SAMPLE_BLOCKS` of
    :data:`SAMPLE_BLOCK_BYTES`) at evenly spaced offsets, first and last included, each prefixed by its
    offset; the whole file when it is smaller."""
    path = Path(path)
    size = path.stat().st_size if size is None else size
    blocks, block_bytes = blocks or SAMPLE_BLOCKS, block_bytes or SAMPLE_BLOCK_BYTES
    digest = hashlib.sha256()
    span = max(size - block_bytes, 0)
    offsets = sorted({round(i * span / max(blocks - 1, 1)) for i in range(blocks)})
    with open(path, "rb") as handle:
        for offset in offsets:
            handle.seek(offset)
            digest.update(f"{offset}:".encode())
            digest.update(handle.read(block_bytes))
    return digest.hexdigest()


def crop_crc32(pixels: np.ndarray) -> int:
    """CRC-32 of one crop's bytes (C order)."""
    return zlib.crc32(np.ascontiguousarray(pixels))


def crc32_path(array: str | os.PathLike) -> Path:
    """``arrays/<split>.crc32.npy`` beside the split array ``arrays/<split>.npy``."""
    return Path(array).with_suffix(".crc32.npy")


def hash_array(path: str | os.PathLike, progress: bool | None = None) -> tuple[str, np.ndarray]:
    """(sha256 of the whole ``.npy`` file, CRC-32 of each row's bytes) in one sequential read, so a
    store's checksums cost one pass over its arrays (a progress bar for files over 1 GiB)."""
    path = Path(path)
    shape, dtype, _, offset = _read_header(path)
    rows, row_bytes = (shape[0], int(np.prod(shape[1:])) * dtype.itemsize) if shape else (0, 0)
    checksums = np.empty(rows, dtype=np.uint32)
    digest = hashlib.sha256()
    size = path.stat().st_size
    per_read = max(1, _CHUNK // max(row_bytes, 1))
    with (
        open(path, "rb") as handle,
        _byte_bar(size, f"sha256 + crc32 {path.name}", progress) as bar,
    ):
        digest.update(handle.read(offset))
        for first in range(0, rows, per_read):
            count = min(per_read, rows - first)
            chunk = memoryview(handle.read(count * row_bytes))
            digest.update(chunk)
            for i in range(count):
                checksums[first + i] = zlib.crc32(chunk[i * row_bytes : (i + 1) * row_bytes])
            bar.update(len(chunk))
        digest.update(handle.read())  # nothing after the rows in a .npy file written here
    return digest.hexdigest(), checksums


def array_record(path: str | os.PathLike) -> dict:
    """What the manifest records of a split array: size, shape, dtype, full and sampled sha256, and the
    sha256 of its per-crop checksum file (written here, :func:`crc32_path`)."""
    path = Path(path)
    sha256, checksums = hash_array(path)
    target = crc32_path(path)
    np.save(target, checksums, allow_pickle=False)
    shape, dtype, _, _ = _read_header(path)
    return {
        "bytes": path.stat().st_size,
        "shape": list(shape),
        "dtype": str(dtype),
        "sha256": sha256,
        "sampled_sha256": sampled_sha256(path),
        "sample_blocks": SAMPLE_BLOCKS,
        "sample_block_bytes": SAMPLE_BLOCK_BYTES,
        "crc32_sha256": file_sha256(target),
    }


def _read_header(path: Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """(shape, dtype, fortran order, data offset) of a ``.npy`` file, without reading its data."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        return shape, dtype, fortran, handle.tell()


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
    """``manifest.json`` of a store whose table and arrays are written (deterministic: no dates, no pids).

    Each split's array is hashed in full here (:func:`array_record`), so readers can prove its pixels.
    """
    splits = {
        split: {
            "n": len(rows),
            "fingerprint": table_fingerprint(rows),
            "array": array_record(array_path(root, split)),
        }
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
        self._verified: dict[str, bool] = {}  # split -> fully hashed
        self._checksums: dict[str, np.ndarray | None] = {}

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
        """(N, S, S, 3) uint8 crops of ``split``, memory-mapped read-only (checked first: :meth:`verify`)."""
        self.verify(split)
        return np.load(array_path(self.root, split), mmap_mode="r", allow_pickle=False)

    def verify(self, split: str, full: bool = False) -> None:
        """Check ``split``'s array against the manifest: file size, ``.npy`` header (uint8
        ``(N, S, S, 3)``) and the sha256 of sampled blocks; with ``full`` the sha256 of every byte.
        Each check runs once per store object and split.

        Raises:
            KeyError: the store has no such split.
            DamagedCropStoreError: one line naming the file, what is wrong, and to re-run preprocessing.
        """
        if split not in self.manifest["splits"]:
            raise KeyError(f"{self.root}: no '{split}' crops; splits: {sorted(self.manifest['splits'])}")
        if self._verified.get(split) is True or (split in self._verified and not full):
            return
        path = array_path(self.root, split)
        entry = self.manifest["splits"][split]
        record = entry.get("array") or {}
        expected = (entry["n"], self.crop_size, self.crop_size, 3)
        if not path.is_file():
            raise self._damaged(path, "the file is missing")
        size = path.stat().st_size
        if size == 0:
            raise self._damaged(path, "the file is empty (0 bytes)")
        try:
            shape, dtype, fortran, offset = _read_header(path)
        except Exception as error:  # any unreadable header is the same damage
            with path.open("rb") as handle:
                first = handle.read(6)
            what = "zeros" if first == bytes(len(first)) else f"{first!r}"
            raise self._damaged(
                path, f"not a .npy array: its header is unreadable (starts with {what}; {error})"
            ) from None
        if tuple(shape) != expected or dtype != np.uint8 or fortran:
            raise self._damaged(path, f"holds {dtype} {tuple(shape)}, the manifest says uint8 {expected}")
        want = record.get("bytes", offset + int(np.prod(expected)))
        if size != want:
            state = "truncated" if size < want else "longer than written"
            raise self._damaged(path, f"{state}: {size} bytes, the manifest says {want}")
        if not record:
            logger.warning(
                "%s: the crop store predates pixel checksums; its pixels are not verified (re-run "
                "preprocessing to record them)",
                path,
            )
        elif (
            sampled_sha256(path, size, record.get("sample_blocks"), record.get("sample_block_bytes"))
            != record["sampled_sha256"]
        ):
            raise self._damaged(path, "its pixels changed since preprocessing (sampled sha256 differs)")
        elif full:
            logger.info("verifying every byte of %s (%.1f GB)", path, size / 1e9)
            if file_sha256(path) != record["sha256"]:
                raise self._damaged(path, "its pixels changed since preprocessing (sha256 differs)")
        self._verified[split] = full

    def crop_checksums(self, split: str) -> np.ndarray | None:
        """(N,) uint32 CRC-32 of each crop of ``split`` (checked against the manifest's sha256 of the
        file); None for a store written before per-crop checksums (a warning says so)."""
        if split not in self._checksums:
            path = crc32_path(array_path(self.root, split))
            expected = (self.manifest["splits"][split].get("array") or {}).get("crc32_sha256")
            if expected is None:
                logger.warning(
                    "%s: the crop store predates per-crop checksums; the crops are not checked as they "
                    "are read (re-run preprocessing to record them)",
                    self.root,
                )
                self._checksums[split] = None
            elif not path.is_file():
                raise self._damaged(path, "the file is missing")
            elif file_sha256(path) != expected:
                raise self._damaged(path, "it changed since preprocessing (sha256 differs)")
            else:
                checksums = np.load(path, allow_pickle=False)
                if checksums.shape != (self.manifest["splits"][split]["n"],):
                    raise self._damaged(path, f"holds {checksums.shape[0]} checksums, not one per crop")
                self._checksums[split] = checksums
        return self._checksums[split]

    def check_crop(self, split: str, row: int, pixels: np.ndarray) -> None:
        """Raise :class:`DamagedCropStoreError` naming the file and the crop when ``pixels``, read from row
        ``row`` of ``split``'s array, differ from what preprocessing wrote (their CRC-32)."""
        checksums = self.crop_checksums(split)
        if checksums is not None and crop_crc32(pixels) != int(checksums[row]):
            crop = self.table.loc[self.table["split"] == split, "crop_path"].iloc[row]
            raise self._damaged(
                array_path(self.root, split),
                f"crop {row} ({crop}) changed since preprocessing (its CRC-32 differs)",
            )

    def verify_all(self, full: bool = False) -> None:
        """:meth:`verify` every split of the store."""
        for split in sorted(self.manifest["splits"]):
            self.verify(split, full=full)

    def _damaged(self, path: Path, what: str) -> DamagedCropStoreError:
        dataset = self.root.name.removesuffix("_crops")
        command = "the preprocessing pipeline"
        if dataset != self.root.name:
            command = f"kedro run --pipelines={dataset}_preprocess"
        return DamagedCropStoreError(f"{path}: {what}; the crop store is damaged: re-run {command}")

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
