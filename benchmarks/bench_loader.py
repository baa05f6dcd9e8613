"""Training-loader throughput at 256x256 with augmentation: crops per second PER WORKER (one process).

Two ways to feed the model augmented 256 px crops with consistent keypoints:

- ``batched`` (what ``training.engine`` does): each worker only decodes the stored 256 px JPEG crop
  (``training.data.HandCrops``); the batch is augmented at once on the training device by
  ``training.augment.prepare_batch`` (one ``affine_grid``/``grid_sample`` for rotation, scale, shift
  and flip, colour jitter, normalisation).
- ``per_sample`` (the straightforward path): decode the full source image, warp the hand's square box
  to 256 px with PIL, then augment that one sample (torchvision ``affine`` + ``hflip`` +
  ``ColorJitter``-style adjustments on the PIL image, keypoints through the same matrix), to tensor,
  normalise.

Reported: decode-only and full-path crops/s of one process (``torch.set_num_threads(1)``, like a
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
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).parent))
import _common

from mle_hand_pipeline.datasets.cropping import CropSettings, crop_hands
from mle_hand_pipeline.datasets.crops import CropBox, warp_crop
from mle_hand_pipeline.datasets.records import stack_column
from mle_hand_pipeline.training.augment import IMAGENET_MEAN, IMAGENET_STD, AugmentSettings, prepare_batch
from mle_hand_pipeline.training.data import HandCrops


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
    with tempfile.TemporaryDirectory() as tmp:
        table, _ = crop_hands(hands, args.root, tmp, CropSettings(size=args.size), 2, "raise")
        batched = HandCrops(table, tmp)
        straightforward = PerSampleCrops(table, args.root, args.size, settings)
        n = len(table)

        torch.set_num_threads(1)  # what a DataLoader worker gets
        decode = per_process_rate(batched, n)
        per_sample = per_process_rate(straightforward, n)
        generator = torch.Generator().manual_seed(0)
        device = torch.device("cpu")
        batch = torch.utils.data.default_collate([batched[i] for i in range(args.batch)])
        reps = max(3, 256 // args.batch)

        def augment():
            prepare_batch(batch, args.size, device, settings, generator)

        augment_1 = args.batch / min(_common.timed(augment, reps))
        torch.set_num_threads(threads)
        augment_all = args.batch / min(_common.timed(augment, reps))
        # Batched path per worker: the worker decodes, the training process augments. If one core had to
        # do both, its rate would be the harmonic combination:
        combined_1 = 1 / (1 / decode + 1 / augment_1)

        def prepare(item):
            prepare_batch(item, args.size, device, settings, generator)

        loaders = []
        for workers in (1, 2):
            loaders.append(
                {
                    "path": "batched (HandCrops + prepare_batch in the main process)",
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
        {"measure": "batched: decode 256px JPEG crop (per worker)", "crops_per_s": decode},
        {"measure": f"batched: augment batch {args.batch}, 1 thread", "crops_per_s": augment_1},
        {
            "measure": f"batched: augment batch {args.batch} on CPU, {threads} threads",
            "crops_per_s": augment_all,
        },
        {"measure": "batched: decode + augment on one core", "crops_per_s": combined_1},
        {"measure": "per_sample: whole path (per worker)", "crops_per_s": per_sample},
    ]
    path = _common.save(
        "loader",
        args.out,
        {"size": args.size, "batch": args.batch, "crops": n, "per_worker": rows, "dataloader": loaders},
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
    )


if __name__ == "__main__":
    main()
