"""What checking the crops costs: the per-crop CRC-32 a loader verifies on every read, against the read
alone, and the store-level checks a run makes before its first batch (quick: sampled blocks; full:
every byte).

For each crop of the split (``--limit`` the first N), one process and one thread, as a DataLoader
worker reads: ``read`` copies the crop out of the memory-mapped array (what ``HandCrops`` did before the
checksums), ``read_and_check`` also computes its CRC-32 and compares it with the store's
(``CropStore.check_crop``). Both passes run twice and the second is timed, so the crops come from the
page cache (the training case: the array is read every epoch). Reported per crop and per epoch of the
split.

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

from mle_hand_pipeline.datasets.crop_store import CropStore


def _pass(pixels: np.ndarray, rows: range, check=None) -> float:
    started = time.perf_counter()
    for row in rows:
        crop = np.array(pixels[row])
        if check is not None:
            check(row, crop)
    return time.perf_counter() - started


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

    results = {}
    for name, fn in (("read", None), ("read_and_check", check)):
        _pass(pixels, rows, fn)  # warm: the page cache, as from the second epoch on
        results[name] = _pass(pixels, rows, fn)
    per_crop = {name: seconds / n for name, seconds in results.items()}
    added = per_crop["read_and_check"] - per_crop["read"]
    rows_out = [
        {
            "pass": name,
            "crops": n,
            "us_per_crop": per_crop[name] * 1e6,
            "GB_per_s": crop_bytes / per_crop[name] / 1e9,
            "s_per_epoch_of_split": per_crop[name] * len(pixels),
        }
        for name in results
    ]
    payload = {
        "store": str(args.store),
        "split": args.split,
        "split_crops": len(pixels),
        "crop_bytes": crop_bytes,
        "array_bytes": int(store.manifest["splits"][args.split]["array"]["bytes"]),
        "rows": rows_out,
        "check_us_per_crop": added * 1e6,
        "check_s_per_epoch_of_split": added * len(pixels),
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
    )


if __name__ == "__main__":
    main()
