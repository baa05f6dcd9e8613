"""Training throughput of the CPU demo configuration and where a step's time goes.

The configuration of conf/base/parameters_train.yml (ResNet-18 stopped at stride 8, 64 px, 3 stages,
head width 64, MLE loss with one RealNVP flow per stage and the heatmap prior, soft-argmax over a
5x5 window, batch 16, Adam, no loader workers) on 256 px synthetic RHD
crops. Each step is timed in phases, exactly in the order ``training.engine.Trainer`` runs them:

    data       waiting for the DataLoader's next batch (decode in the workers)
    augment    training.augment.prepare_batch (batched affine + colour jitter + normalise)
    forward    the network
    loss       the MLE loss: the flows' log-densities of the residuals, per stage
    backward   loss.backward() through loss, flows and network
    optimizer  gradient clipping + Adam step

Separately, the flows + loss alone (forward and backward on the network's detached outputs) give the
share of a step that the MLE loss costs (aim: under 5 %).

On a CUDA GPU (used when present) the defaults become the paper's model (``--preset paper``: ResNet-50
at 256 px, 5 stages, head 256, batch 128, 8 workers) with the trainer's settings (bf16 autocast,
channels_last, fused Adam), the phases are timed with the queue drained between them, and it also
measures, in the same run: the bf16 matmul peak; the step alone (one batch staged on the GPU, no
syncs) in img/s and TFLOP/s with its share of that peak; the real ``training.engine.fit`` loop on the
same crops (the last epoch's img/s against the step alone) and the GPU-busy share during it (NVML).
``--compile loss|all`` measures ``train.compile`` (first call = compile time, reported apart).

    python benchmarks/bench_train_step.py                 # 12 timed steps after 2 warm-up steps
    python benchmarks/bench_train_step.py --profile       # + torch.profiler table of the top ops
    python benchmarks/bench_train_step.py --quick
    python benchmarks/bench_train_step.py --preset paper --compile loss   # on a GPU
"""

from __future__ import annotations

import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
import _common

from mle_hand_pipeline.datasets.cropping import CropSettings, crop_hands
from mle_hand_pipeline.datasets.records import filter_visible
from mle_hand_pipeline.datasets.rhd import read_rhd
from mle_hand_pipeline.methods import build_loss, build_model
from mle_hand_pipeline.training.augment import AugmentSettings, prepare_batch
from mle_hand_pipeline.training.checkpoint import ModelSpec
from mle_hand_pipeline.training.data import HandCrops
from mle_hand_pipeline.training.engine import TrainConfig, fit
from mle_hand_pipeline.training.inference import autocast_context

PHASES = ("data", "augment", "forward", "loss", "backward", "optimizer")
PRESETS = {
    "cpu_demo": {"backbone": "resnet18", "backbone_stride": 8, "input_size": 64, "stages": 3,
                 "head_channels": 64, "batch": 16, "workers": 0, "heatmap_prior": 1.0, "decode_window": 2},
    "paper": {"backbone": "resnet50", "backbone_stride": 32, "input_size": 256, "stages": 5,
              "head_channels": 256, "batch": 128, "workers": 8, "heatmap_prior": 0.0, "decode_window": 0},
}  # fmt: skip


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=_common.REPO / "data/01_raw/synthetic/RHD_published_v2")
    device = _common.bench_device()
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="paper" if device.type == "cuda" else "cpu_demo",
        help="model and batch defaults (paper on a GPU, cpu_demo on the CPU); the options below override",
    )
    p.add_argument("--backbone")
    p.add_argument("--input-size", type=int)
    p.add_argument("--stages", type=int)
    p.add_argument("--head-channels", type=int)
    p.add_argument("--backbone-stride", type=int, help="32 (whole ResNet) | 16 | 8 (the CPU demo)")
    p.add_argument("--heatmap-prior", type=float, help="model.loss.heatmap_prior (the CPU demo: 1.0)")
    p.add_argument("--decode-window", type=int, help="model.decode_window (the CPU demo: 2)")
    p.add_argument("--batch", type=int)
    p.add_argument("--workers", type=int, help="DataLoader workers (config: 2, paper env: 8)")
    p.add_argument("--compile", choices=("off", "loss", "all"), default="off", help="train.compile")
    p.add_argument("--trainer-epochs", type=int, default=2, help="GPU only: epochs of the real fit loop")
    p.add_argument(
        "--gpu-figures", action="store_true", help="also on the CPU: peak, step alone, fit loop (for tests)"
    )
    p.add_argument("--crop-size", type=int, default=256, help="stored crop size (preprocessing: 256)")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--profile", action="store_true", help="print torch.profiler's top ops of 3 steps")
    args = p.parse_args()
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick:
        torch.set_num_threads(1)  # --quick only proves the script runs: avoid thread contention
        args.input_size, args.stages, args.head_channels, args.batch = 64, 2, 16, 4
        args.crop_size, args.steps, args.warmup, args.workers = 64, 2, 1, 1
    if not args.root.is_dir():
        sys.exit(f"{args.root} not found: run `kedro run --pipelines=synthetic_data` first (or pass --root)")
    hands, _ = read_rhd(args.root, ["training", "evaluation"], val_ratio=0.1, seed=42, on_bad_sample="raise")
    hands, _ = filter_visible(hands, 10)
    hands = hands.iloc[: args.batch * (args.steps + args.warmup + (3 if args.profile else 0))]
    load_before = _common.loadavg()

    cuda = device.type == "cuda"
    gpu_figures = cuda or args.gpu_figures
    precision = "bf16" if cuda else "fp32"  # the trainer's precision: auto
    peak = (
        _common.matmul_peak(device, n=512 if args.quick else None) if gpu_figures else None
    )  # the CPU figures have no peak (as before)

    torch.manual_seed(0)
    model = build_model(
        "mle",
        args.backbone,
        args.stages,
        args.input_size,
        head_channels=args.head_channels,
        backbone_stride=args.backbone_stride,
        decode_window=args.decode_window,
    )
    loss_fn = build_loss(
        "mle", args.stages, residual="none", flow_init="identity", heatmap_prior=args.heatmap_prior
    )
    model.to(device), loss_fn.to(device)
    if cuda:
        model.to(memory_format=torch.channels_last)
    model.train(), loss_fn.train()
    parameters = [*model.parameters(), *loss_fn.parameters()]
    # FLOPs of one training step, counted eagerly (before any compile) on a batch of the same shape.
    train_flops = _count_train_flops(args, model, loss_fn, parameters, device) if gpu_figures else None
    compile_started = time.perf_counter()
    if args.compile == "all":
        model.compile()
    if args.compile in ("loss", "all"):
        loss_fn.compile()
    optimizer = torch.optim.Adam(parameters, lr=1e-3, fused=True if cuda else None)
    settings = AugmentSettings()

    def sync() -> None:
        _common.synchronize(device)

    with tempfile.TemporaryDirectory() as tmp:
        crops = CropSettings(size=args.crop_size)
        workers = min(os.cpu_count() or 2, 16) if cuda else 2
        table, _ = crop_hands(hands.reset_index(drop=True), args.root, tmp, crops, workers, "raise")
        loader = DataLoader(
            HandCrops(table, tmp),
            batch_size=args.batch,
            shuffle=False,
            drop_last=True,
            num_workers=args.workers,
            persistent_workers=args.workers > 0,
            pin_memory=cuda,
        )
        records, loss_only = [], []
        compile_time_s = None
        iterator = _endless(loader)  # a small data set is read again rather than running out
        for step in range(args.warmup + args.steps):
            t = [time.perf_counter()]
            batch = next(iterator)
            t.append(time.perf_counter())
            generator = torch.Generator(device=device).manual_seed(step)
            images, target, visible = prepare_batch(batch, args.input_size, device, settings, generator)
            if cuda:
                images = images.contiguous(memory_format=torch.channels_last)
            sync()
            t.append(time.perf_counter())
            with autocast_context(device, precision):
                output = model(images)
            sync()
            t.append(time.perf_counter())
            with autocast_context(device, precision):
                result = loss_fn(output, target, visible)
            sync()
            t.append(time.perf_counter())
            optimizer.zero_grad(set_to_none=True)
            result.total.backward()
            sync()
            t.append(time.perf_counter())
            torch.nn.utils.clip_grad_norm_(parameters, 5.0)
            optimizer.step()
            sync()
            t.append(time.perf_counter())
            if step == 0 and args.compile != "off":
                compile_time_s = time.perf_counter() - compile_started
            if step >= args.warmup:
                records.append(dict(zip(PHASES, (b - a for a, b in itertools.pairwise(t)), strict=True)))
                # The loss and flows alone, forward + backward, on the network's detached outputs.
                detached = type(output)(
                    output.coords.detach().requires_grad_(),
                    output.sigmas.detach().requires_grad_(),
                    output.heatmaps.detach(),
                )
                start = time.perf_counter()
                with autocast_context(device, precision):
                    flows_loss = loss_fn(detached, target, visible).total
                flows_loss.backward()
                sync()
                loss_only.append(time.perf_counter() - start)
        gpu = None
        if gpu_figures:
            step = _step_fn(model, loss_fn, optimizer, parameters, images, target, visible)
            gpu = _step_alone(args, step, device, train_flops, peak)
            gpu.update(_trainer_loop(args, table, tmp, device))
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
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
    }
    if compile_time_s is not None:
        summary["compile_time_s"] = compile_time_s
    if gpu is not None:
        summary.update(gpu)
        summary["flows_loss_share_of_step_alone"] = summary["flows_loss_fwd_bwd_ms"] / gpu["step_alone_ms"]
    keys = ("preset", "backbone", "input_size", "stages", "head_channels", "batch", "workers", "crop_size",
            "steps", "compile")  # fmt: skip
    config = {k: getattr(args, k) for k in keys}
    if gpu is not None:
        summary["trainer_over_step_alone"] = summary["trainer_images_per_s"] / gpu["step_alone_images_per_s"]
    name = f"train_step_{_common.device_slug(device)}_{args.preset}" if gpu_figures else "train_step"
    path = _common.save(
        name, args.out, {"config": config, "phases": rows, **summary}, load_before, args.quick
    )
    _common.report(f"training step: {config}", rows, path, load_before, **summary)


def _endless(loader):
    while True:
        yield from loader


def _step_fn(model, loss_fn, optimizer, parameters, images, target, visible):
    """One training step as the trainer runs it on a GPU (bf16 autocast, no host sync)."""
    device = images.device

    def step() -> None:
        with autocast_context(device, "bf16" if device.type == "cuda" else "fp32"):
            total = loss_fn(model(images), target, visible).total
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 5.0)
        optimizer.step()

    return step


def _count_train_flops(args, model, loss_fn, parameters, device) -> int:
    images = torch.randn(args.batch, 3, args.input_size, args.input_size, device=device)
    target = torch.rand(args.batch, 21, 2, device=device) - 0.5
    visible = torch.ones(args.batch, 21, dtype=torch.bool, device=device)
    optimizer = torch.optim.SGD(parameters, lr=0.0)  # lr 0: counting must not move the weights
    with FlopCounterMode(display=False) as counter:
        _step_fn(model, loss_fn, optimizer, parameters, images, target, visible)()
    return counter.get_total_flops()


def _step_alone(args, step, device, flops: int, peak: dict) -> dict:
    """The step alone on one staged batch (no syncs inside, as the trainer runs it): img/s, TFLOP/s and
    the share of the bf16 matmul peak measured in the same run."""
    repeat = max(args.steps, 5)
    times = _common.timed_on(device, lambda: [step() for _ in range(repeat)], 3, warmup=1)
    step_s = min(times) / repeat
    return {
        "matmul_peak_tflops": peak["flops_per_s"] / 1e12,
        "matmul": peak,
        "step_alone_ms": step_s * 1000,
        "step_alone_images_per_s": args.batch / step_s,
        "step_alone_tflops": flops / step_s / 1e12,
        "step_alone_share_of_peak": flops / step_s / peak["flops_per_s"],
        "train_gflop_per_image": flops / args.batch / 1e9,
    }


def _trainer_loop(args, table, crops_dir, device) -> dict:
    """The real training loop (``training.engine.fit``, the pipelines' trainer) on the same crops: its last
    epoch's img/s (one epoch = every crop once) and the GPU-busy share while it ran."""
    spec = ModelSpec(
        method="mle",
        backbone=args.backbone,
        stages=args.stages,
        input_size=args.input_size,
        head_channels=args.head_channels,
        loss={"residual": "none", "flow_init": "identity"},
    )
    config = TrainConfig(
        epochs=args.trainer_epochs,
        batch_size=args.batch,
        lr_milestones=(),
        devices=1 if device.type == "cuda" else "cpu",  # one GPU (an integer means GPUs), else the CPU
        num_workers=args.workers,
        eval_batch_size=args.batch,
        compile=args.compile,
    )
    train, val = table, table.iloc[: args.batch]
    with tempfile.TemporaryDirectory() as checkpoints, _common.GpuBusy(device) as busy:
        history = fit(spec, config, train, val, crops_dir, checkpoints).history
    return {
        "trainer_images_per_s": float(history["images_per_s"].iloc[-1]),
        "trainer_epochs": args.trainer_epochs,
        "trainer_steps_per_epoch": len(train) // args.batch,
        "gpu_busy_share_during_fit": busy.share,
    }


if __name__ == "__main__":
    main()
