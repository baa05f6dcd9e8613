"""Training throughput of the CPU demo configuration and where a step's time goes.

The configuration of conf/base/parameters_train.yml (ResNet-18 at 64 px, 5 stages, head width 64,
MLE loss with one RealNVP flow per stage, batch 32, Adam, 2 loader workers) on 256 px synthetic RHD
crops. Each step is timed in phases, exactly in the order ``training.engine.Trainer`` runs them:

    data       waiting for the DataLoader's next batch (decode in the workers)
    augment    training.augment.prepare_batch (batched affine + colour jitter + normalise)
    forward    the network
    loss       the MLE loss: the flows' log-densities of the residuals, per stage
    backward   loss.backward() through loss, flows and network
    optimizer  gradient clipping + Adam step

Separately, the flows + loss alone (forward and backward on the network's detached outputs) give the
share of a step that the MLE loss costs (aim: under 5 %).

    python benchmarks/bench_train_step.py                 # 12 timed steps after 2 warm-up steps
    python benchmarks/bench_train_step.py --profile       # + torch.profiler table of the top ops
    python benchmarks/bench_train_step.py --quick
"""

from __future__ import annotations

import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).parent))
import _common

from mle_hand_pipeline.datasets.cropping import CropSettings, crop_hands
from mle_hand_pipeline.datasets.records import filter_visible
from mle_hand_pipeline.datasets.rhd import read_rhd
from mle_hand_pipeline.methods import build_loss, build_model
from mle_hand_pipeline.training.augment import AugmentSettings, prepare_batch
from mle_hand_pipeline.training.data import HandCrops

PHASES = ("data", "augment", "forward", "loss", "backward", "optimizer")


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=_common.REPO / "data/01_raw/synthetic/RHD_published_v2")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--stages", type=int, default=5)
    p.add_argument("--head-channels", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers (config: 2)")
    p.add_argument("--crop-size", type=int, default=256, help="stored crop size (preprocessing: 256)")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--profile", action="store_true", help="print torch.profiler's top ops of 3 steps")
    args = p.parse_args()
    if args.quick:
        torch.set_num_threads(1)  # --quick only proves the script runs: avoid thread contention
        args.input_size, args.stages, args.head_channels, args.batch = 64, 2, 16, 4
        args.crop_size, args.steps, args.warmup, args.workers = 64, 2, 1, 1
    if not args.root.is_dir():
        sys.exit(f"{args.root} not found: run `kedro run --pipeline=synthetic_data` first (or pass --root)")
    hands, _ = read_rhd(args.root, ["training", "evaluation"], val_ratio=0.1, seed=42, on_bad_sample="raise")
    hands, _ = filter_visible(hands, 10)
    hands = hands.iloc[: args.batch * (args.steps + args.warmup + (3 if args.profile else 0))]
    load_before = _common.loadavg()

    torch.manual_seed(0)
    model = build_model("mle", args.backbone, args.stages, args.input_size, head_channels=args.head_channels)
    loss_fn = build_loss("mle", args.stages, residual="none", flow_init="identity")
    model.train(), loss_fn.train()
    optimizer = torch.optim.Adam([*model.parameters(), *loss_fn.parameters()], lr=1e-3)
    settings, device = AugmentSettings(), torch.device("cpu")

    with tempfile.TemporaryDirectory() as tmp:
        crops = CropSettings(size=args.crop_size)
        table, _ = crop_hands(hands.reset_index(drop=True), args.root, tmp, crops, 2, "raise")
        loader = DataLoader(
            HandCrops(table, tmp),
            batch_size=args.batch,
            shuffle=False,
            drop_last=True,
            num_workers=args.workers,
            persistent_workers=args.workers > 0,
        )
        records, loss_only = [], []
        iterator = iter(loader)
        for step in range(args.warmup + args.steps):
            t = [time.perf_counter()]
            batch = next(iterator)
            t.append(time.perf_counter())
            generator = torch.Generator().manual_seed(step)
            images, target, visible = prepare_batch(batch, args.input_size, device, settings, generator)
            t.append(time.perf_counter())
            output = model(images)
            t.append(time.perf_counter())
            result = loss_fn(output, target, visible)
            t.append(time.perf_counter())
            optimizer.zero_grad(set_to_none=True)
            result.total.backward()
            t.append(time.perf_counter())
            torch.nn.utils.clip_grad_norm_([*model.parameters(), *loss_fn.parameters()], 5.0)
            optimizer.step()
            t.append(time.perf_counter())
            if step >= args.warmup:
                records.append(dict(zip(PHASES, (b - a for a, b in itertools.pairwise(t)), strict=True)))
                # The loss and flows alone, forward + backward, on the network's detached outputs.
                detached = type(output)(
                    output.coords.detach().requires_grad_(),
                    output.sigmas.detach().requires_grad_(),
                    output.heatmaps.detach(),
                )
                start = time.perf_counter()
                loss_fn(detached, target, visible).total.backward()
                loss_only.append(time.perf_counter() - start)
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(3):
                    batch = next(iterator)
                    images, target, visible = prepare_batch(
                        batch, args.input_size, device, settings, generator
                    )
                    optimizer.zero_grad(set_to_none=True)
                    loss_fn(model(images), target, visible).total.backward()
                    optimizer.step()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))

    step_times = [sum(r.values()) for r in records]
    mean_step = statistics.mean(step_times)
    rows = [
        {
            "phase": phase,
            "mean_ms": statistics.mean(r[phase] for r in records) * 1000,
            "share": statistics.mean(r[phase] for r in records) / mean_step,
        }
        for phase in PHASES
    ]
    rows.append({"phase": "step (total)", "mean_ms": mean_step * 1000, "share": 1.0})
    flows_loss_share = statistics.mean(loss_only) / mean_step
    summary = {
        "images_per_s": args.batch / mean_step,
        "median_images_per_s": args.batch / statistics.median(step_times),
        "flows_loss_fwd_bwd_ms": statistics.mean(loss_only) * 1000,
        "flows_loss_share": flows_loss_share,
        "torch_threads": torch.get_num_threads(),
    }
    keys = ("backbone", "input_size", "stages", "head_channels", "batch", "workers", "crop_size", "steps")
    config = {k: getattr(args, k) for k in keys}
    path = _common.save(
        "train_step", args.out, {"config": config, "phases": rows, **summary}, load_before, args.quick
    )
    _common.report(f"training step: {config}", rows, path, load_before, **summary)


if __name__ == "__main__":
    main()
