"""What checking the crops costs: the per-crop CRC-32 a loader verifies on every read, against the read
alone, and the store-level checks a run makes before its first batch (quick: sampled blocks; full:
every byte).

For each crop of the split (``--limit`` the first N), one process and one thread, as a DataLoader
worker reads it: the time to copy it out of the memory-mapped array (what ``HandCrops`` did before the
checksums; from disk or the page cache, whichever holds it) and, separately, the time to check it
against its CRC-32 (``CropStore.check_crop``: pure CPU, the same wherever the bytes came from). One
pass; reported per crop and per epoch of the split. Then what recording the checksums costs
preprocessing: the split array's sha256 alone (``file_sha256``) against the sha256 and every crop's
CRC-32 in the same read (``hash_array``), each after a warm-up read.

    python benchmarks/bench_crop_checks.py                                # the demo's store
    python benchmarks/bench_crop_checks.py --store /tmp/scale/proj/data/02_intermediate/rhd_crops \\
        --name crop_checks_fullsize                                       # a full-size RHD store
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import _common

from mle_hand_pipeline.datasets.crop_store import CropStore, array_path, file_sha256, hash_array


def _timed_pass(pixels: np.ndarray, rows: range, check) -> tuple[float, float]:
    """(seconds reading, seconds checking) over ``rows``."""
    reading = checking = 0.0
    for row in rows:
        started = time.perf_counter()
        crop = np.array(pixels[row])
        read = time.perf_counter()
        check(row, crop)
        reading, checking = reading + read - started, checking + time.perf_counter() - read
    return reading, checking


def main() -> None:
    parser = _common.parser(__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=_common.REPO / "data/02_intermediate/rhd_crops")
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=0, help="the first N crops (default: all)")
    parser.add_argument("--name", default="crop_checks", help="result file name (without .json)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = _common.loadavg()

    store = CropStore(args.store)
    started = time.perf_counter()
    store.verify(args.split)
    quick_s = time.perf_counter() - started
    started = time.perf_counter()
    store.verify(args.split, full=True)
    full_s = time.perf_counter() - started
    pixels = store.array(args.split)
    if store.crop_checksums(args.split) is None:
        sys.exit(f"{args.store} has no per-crop checksums: re-run its preprocessing")
    n = min(args.limit or len(pixels), 64 if args.quick else len(pixels))
    rows = range(n)
    crop_bytes = int(np.prod(pixels.shape[1:]))

    def check(row: int, crop: np.ndarray) -> None:
        store.check_crop(args.split, row, crop)

    reading, checking = _timed_pass(pixels, rows, check)
    per_crop = {"read": reading / n, "check": checking / n}
    added = per_crop["check"]
    rows_out = [
        {
            "step": name,
            "crops": n,
            "us_per_crop": seconds * 1e6,
            "GB_per_s": crop_bytes / seconds / 1e9,
            "s_per_epoch_of_split": seconds * len(pixels),
        }
        for name, seconds in per_crop.items()
    ]
    array_file = array_path(args.store, args.split)
    file_sha256(array_file, progress=False)  # warm: both timed reads below come from the same cache state
    started = time.perf_counter()
    file_sha256(array_file, progress=False)
    sha256_s = time.perf_counter() - started
    started = time.perf_counter()
    hash_array(array_file, progress=False)
    sha256_and_crc32_s = time.perf_counter() - started
    payload = {
        "store": str(args.store),
        "split": args.split,
        "split_crops": len(pixels),
        "crop_bytes": crop_bytes,
        "array_bytes": int(store.manifest["splits"][args.split]["array"]["bytes"]),
        "rows": rows_out,
        "check_us_per_crop": added * 1e6,
        "check_share_of_read_and_check": checking / (reading + checking),
        "check_s_per_epoch_of_split": added * len(pixels),
        "preprocessing_sha256_s": sha256_s,
        "preprocessing_sha256_and_crc32_s": sha256_and_crc32_s,
        "quick_check_s": quick_s,
        "full_check_s": full_s,
    }
    path = _common.save(args.name, args.out, payload, load_before, args.quick)
    _common.report(
        args.name,
        rows_out,
        path,
        load_before,
        per_crop_check=f"{added * 1e6:.1f} us per crop, {added * len(pixels):.2f} s per epoch",
        store_checks=f"quick {quick_s:.3f} s, full {full_s:.1f} s ({payload['array_bytes'] / 1e9:.2f} GB)",
        preprocessing=f"sha256 {sha256_s:.1f} s, sha256 + every crop's crc32 {sha256_and_crc32_s:.1f} s",
    )


if __name__ == "__main__":
    main()
