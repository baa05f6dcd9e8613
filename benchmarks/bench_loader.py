"""Training-loader throughput at 256x256 with augmentation: crops per second PER WORKER (one process).

Two ways to feed the model augmented 256 px crops with consistent keypoints:

- ``batched`` (what ``training.engine`` does): each worker only fetches the stored 256 px crop
  (``training.data.HandCrops``), by index from the crop store's memory-mapped uint8 array (measured
  against decoding the same crop's JPEG file, the engine's former path: aim >= 5000 against ~900
  crops/s per worker); or, with ``train.data_on_device``, the batch is gathered by index from the
  crops held on the device (``DeviceBatches``, measured on CUDA when present). The batch is augmented
  at once on the training device by ``training.augment.prepare_batch`` (one
  ``affine_grid``/``grid_sample`` for rotation, scale, shift and flip, colour jitter, normalisation).
- ``per_sample`` (the straightforward path): decode the full source image, warp the hand's square box
  to 256 px with PIL, then augment that one sample (torchvision ``affine`` + ``hflip`` +
  ``ColorJitter``-style adjustments on the PIL image, keypoints through the same matrix), to tensor,
  normalise.

Reported: array-read, JPEG-decode and full-path crops/s of one process (``torch.set_num_threads(1)``, like a
DataLoader worker), the batched augmentation alone (crops/s, batch 32, one thread and all threads),
and a DataLoader epoch with 1 and 2 workers.

    python benchmarks/bench_loader.py            # 512 synthetic RHD hands
    python benchmarks/bench_loader.py --quick
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch.utils.data import DataLoader, default_collate

sys.path.insert(0, str(Path(__file__).parent))
import _common

from mle_hand_pipeline.datasets.cropping import CropSettings, crop_hands
from mle_hand_pipeline.datasets.crops import CropBox, warp_crop
from mle_hand_pipeline.datasets.records import stack_column
from mle_hand_pipeline.training.augment import IMAGENET_MEAN, IMAGENET_STD, AugmentSettings, prepare_batch
from mle_hand_pipeline.training.data import DeviceBatches, HandCrops


class PerSampleCrops(torch.utils.data.Dataset):
    """The straightforward path: source image -> PIL crop -> per-sample PIL augmentation -> tensor."""

    def __init__(self, table, raw_root: Path, size: int, settings: AugmentSettings, seed: int = 0):
        self.rows = list(table.itertuples(index=False))
        self.keypoints = stack_column(table["keypoints_source"]).astype(np.float32)
        self.raw_root, self.size, self.settings, self.seed = raw_root, size, settings, seed
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row, s = self.rows[index], self.settings
        rng = np.random.default_rng((self.seed, index))
        with Image.open(self.raw_root / row.source_image) as opened:
            image = opened.convert("RGB")
        box = CropBox(row.box_x0, row.box_y0, row.box_side)
        crop = warp_crop(image, box, self.size, row.mirrored)
        angle = float(rng.uniform(-s.rotation, s.rotation)) if rng.random() < s.rotation_prob else 0.0
        scale = float(rng.uniform(*s.scale))
        shift = [float(v) for v in rng.uniform(-s.shift, s.shift, 2) * self.size]
        crop = TF.affine(crop, angle=angle, translate=shift, scale=scale, shear=[0.0, 0.0],
                         interpolation=TF.InterpolationMode.BILINEAR)  # fmt: skip
        flip = rng.random() < s.flip_prob
        if flip:
            crop = TF.horizontal_flip(crop)
        crop = TF.adjust_brightness(crop, float(rng.uniform(1 - s.brightness, 1 + s.brightness)))
        crop = TF.adjust_contrast(crop, float(rng.uniform(1 - s.contrast, 1 + s.contrast)))
        crop = TF.adjust_saturation(crop, float(rng.uniform(1 - s.saturation, 1 + s.saturation)))
        # Keypoints through the same transform (about the crop centre), then the flip.
        u = (self.keypoints[index] - [row.box_x0, row.box_y0]) * (self.size / row.box_side)
        if row.mirrored:
            u[:, 0] = self.size - u[:, 0]
        c = self.size / 2
        a = math.radians(-angle)  # torchvision rotates counter-clockwise on screen for positive angles
        rot = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=np.float32)
        u = (u - c) @ rot.T + c + shift
        if flip:
            u[:, 0] = self.size - u[:, 0]
        pixels = torch.from_numpy(np.asarray(crop).copy()).permute(2, 0, 1).float() / 255
        return {"image": (pixels - self.mean) / self.std, "keypoints": torch.from_numpy(u.astype(np.float32))}


def per_process_rate(dataset, n: int) -> float:
    """Items per second of ``dataset[i]`` in this process with one thread (a DataLoader worker)."""
    start = time.perf_counter()
    for i in range(n):
        dataset[i % len(dataset)]
    return n / (time.perf_counter() - start)


def loader_rate(dataset, workers: int, batch: int, collate_prepare=None) -> float:
    loader = DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=workers, drop_last=True)
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    start, count = time.perf_counter(), 0
    for item in iterator:
        if collate_prepare is not None:
            collate_prepare(item)
        count += len(item["image"]) if isinstance(item, dict) else len(item)
    return count / (time.perf_counter() - start)


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=_common.SYNTHETIC_RHD)
    p.add_argument("--hands", type=int, default=512)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    args = p.parse_args()
    if args.quick:
        torch.set_num_threads(1)  # --quick only proves the script runs: avoid thread contention
        args.hands, args.size, args.batch = 16, 64, 4
    hands = _common.synthetic_rhd_hands(args.root, args.hands)
    settings = AugmentSettings()
    threads = torch.get_num_threads()
    load_before = _common.loadavg()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        crops = Path(tmp) / "crops"
        # One split, so every hand is in one array (as a training split is).
        table, _ = crop_hands(
            hands.assign(split="train"), args.root, crops, CropSettings(size=args.size), 2, "raise"
        )
        batched = HandCrops(table, crops)
        jpeg = HandCrops(table, crops, decode_jpeg=True)
        straightforward = PerSampleCrops(table, args.root, args.size, settings)
        n = len(table)

        torch.set_num_threads(1)  # what a DataLoader worker gets
        array_read = max(per_process_rate(batched, n) for _ in range(3))  # page cache warm after the first
        decode = per_process_rate(jpeg, n)

        def read_and_collate():  # what a DataLoader worker does per batch: items, then one stacked batch
            for start in range(0, n - args.batch + 1, args.batch):
                default_collate([batched[i] for i in range(start, start + args.batch)])

        read_collate = (n // args.batch) * args.batch / min(_common.timed(read_and_collate, 3))
        per_sample = per_process_rate(straightforward, n)
        sampler = torch.utils.data.SequentialSampler(batched)
        on_device = DeviceBatches(batched, sampler, args.batch, device)

        def gather():
            for _ in on_device:
                pass
            if device.type == "cuda":
                torch.cuda.synchronize()

        gathered = len(on_device) * args.batch / min(_common.timed(gather, 3))
        generator = torch.Generator(device=device).manual_seed(0)
        batch = next(iter(on_device))
        reps = max(3, 256 // args.batch)

        def augment():
            prepare_batch(batch, args.size, device, settings, generator)
            if device.type == "cuda":
                torch.cuda.synchronize()

        augment_1 = args.batch / min(_common.timed(augment, reps))
        torch.set_num_threads(threads)
        augment_all = args.batch / min(_common.timed(augment, reps))
        # Batched path per worker: the worker reads, the training process augments. If one core had to
        # do both, its rate would be the harmonic combination:
        combined_1 = 1 / (1 / array_read + 1 / augment_1)

        def prepare(item):
            prepare_batch(item, args.size, device, settings, generator)

        loaders = []
        for workers in (1, 2):
            loaders.append(
                {
                    "path": "batched (HandCrops from the uint8 array + prepare_batch in the main process)",
                    "workers": workers,
                    "crops_per_s": loader_rate(batched, workers, args.batch, prepare),
                }
            )
            loaders.append(
                {
                    "path": "per_sample (source decode + PIL warp + PIL augment)",
                    "workers": workers,
                    "crops_per_s": loader_rate(straightforward, workers, args.batch),
                }
            )
    rows = [
        {
            "measure": f"batched: read {args.size}px crop from the uint8 array (per worker)",
            "crops_per_s": array_read,
        },
        {
            "measure": f"batched: decode {args.size}px JPEG crop (per worker, former path)",
            "crops_per_s": decode,
        },
        {
            "measure": f"batched: read + collate batch {args.batch} from the array (per worker)",
            "crops_per_s": read_collate,
        },
        {
            "measure": f"batched: gather batch {args.batch} on {device.type} (data_on_device)",
            "crops_per_s": gathered,
        },
        {
            "measure": f"batched: augment batch {args.batch} on {device.type}, 1 thread",
            "crops_per_s": augment_1,
        },
        {
            "measure": f"batched: augment batch {args.batch} on {device.type}, {threads} threads",
            "crops_per_s": augment_all,
        },
        {"measure": "batched: array read + augment on one core", "crops_per_s": combined_1},
        {"measure": "per_sample: whole path (per worker)", "crops_per_s": per_sample},
    ]
    path = _common.save(
        "loader",
        args.out,
        {
            "size": args.size,
            "batch": args.batch,
            "crops": n,
            "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
            "per_worker": rows,
            "dataloader": loaders,
        },
        load_before,
        args.quick,
    )
    print(_common.table(rows))
    print()
    _common.report(
        f"training loader at {args.size}px, {n} crops",
        loaders,
        path,
        load_before,
        speedup_batched_vs_per_sample_per_core=round(combined_1 / per_sample, 2),
        array_read_vs_jpeg_decode_per_worker=round(array_read / decode, 1),
    )


if __name__ == "__main__":
    main()
