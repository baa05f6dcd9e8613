"""Model speed on the current device: the full model against the bare backbone, achieved GFLOP/s
against a large fp32 matmul, and inference images/s and latency per runtime.

For each configuration (``paper``: ResNet-50 at 256 px, 5 stages, head width 256; ``cpu_demo``:
ResNet-18 at 64 px, 5 stages, head width 64; ``tiny`` with --quick):

- training images/s (forward + backward + Adam step) of the full model with its MLE loss (flows)
  and of the bare backbone (features -> mean as the loss), and their FLOPs per image
  (``torch.utils.flop_counter.FlopCounterMode``) -> achieved GFLOP/s;
- inference images/s of both (stage T only for the full model);
- inference images/s and latency at batch 1 and 32 for PyTorch eager fp32 (NCHW and channels_last),
  ``torch.compile`` (inductor; skipped with --no-compile or where it fails), and ONNX Runtime.

    python benchmarks/bench_model.py                     # both configurations (~10 min on 2 cores)
    python benchmarks/bench_model.py --configs cpu_demo
    python benchmarks/bench_model.py --quick             # tiny sizes: proves the script runs

On a CUDA GPU (used when present) the peak is a bf16 8192^3 matmul measured in the same run; training
runs as the trainer does (bf16 autocast, channels_last, fused Adam, batch 128); inference is timed at
batch 1, 32 and 256 for eager fp32, eager bf16 autocast, bf16 weights cast once (and its largest
coordinate difference to fp32, in pixels), and ``torch.compile(mode="reduce-overhead")`` (CUDA graphs)
of fp32 and of bf16 weights. ONNX Runtime is measured on the CPU only. ``--gpu-figures`` runs that set
on the CPU (for tests). The result goes to ``model_<device>.json``.
"""

from __future__ import annotations

import copy
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
import _common

from mle_hand_pipeline.export import export_onnx
from mle_hand_pipeline.methods import build_loss, build_model
from mle_hand_pipeline.models import InferenceWrapper
from mle_hand_pipeline.training.inference import autocast_context

GPU_TRAIN_BATCH = 128  # the paper's batch; CONFIGS' train_batch is sized for the CPU

CONFIGS = {
    "paper": {"backbone": "resnet50", "input_size": 256, "stages": 5, "head_channels": 256, "train_batch": 8},
    "cpu_demo": {
        "backbone": "resnet18",
        "input_size": 64,
        "stages": 5,
        "head_channels": 64,
        "train_batch": 32,
    },
    "tiny": {"backbone": "resnet18", "input_size": 64, "stages": 2, "head_channels": 16, "train_batch": 2},
}


def matmul_gflops(n: int, repeat: int) -> float:
    """Best GFLOP/s of an (n, n) @ (n, n) fp32 matmul: the machine's practical peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = min(_common.timed(lambda: torch.mm(a, b), repeat, warmup=1))
    return 2 * n**3 / best / 1e9


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


class Backbone(torch.nn.Module):
    """The bare backbone (B, 3, S, S) -> (B, C, S/32, S/32)."""

    def __init__(self, model):
        super().__init__()
        self.backbone = model.backbone

    def forward(self, x):
        return self.backbone(x)


def train_step_fn(model, loss_fn, images, target, visible, optimizer, precision="fp32"):
    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast_context(images.device, precision):
            if loss_fn is None:  # bare backbone: any scalar of the features will do
                loss = model(images).float().mean()
            else:
                loss = loss_fn(model(images), target, visible).total
        loss.backward()
        optimizer.step()

    return step


def bench_training(
    cfg, repeat: int, device: torch.device | None = None, batch: int | None = None
) -> list[dict]:
    size, batch = cfg["input_size"], batch or cfg["train_batch"]
    device = device or torch.device("cpu")
    cuda = device.type == "cuda"
    rows = []
    for name in ("full", "backbone"):
        torch.manual_seed(0)
        model = build_model("mle", cfg["backbone"], cfg["stages"], size, head_channels=cfg["head_channels"])
        loss_fn = build_loss("mle", cfg["stages"]).to(device) if name == "full" else None
        module = (model if name == "full" else Backbone(model)).to(device)
        if cuda:
            module = module.to(memory_format=torch.channels_last)
        params = list(module.parameters()) + (list(loss_fn.parameters()) if loss_fn else [])
        optimizer = torch.optim.Adam(params, lr=1e-4, fused=True if cuda else None)
        module.train()
        images = torch.randn(batch, 3, size, size, device=device)
        if cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        target = torch.rand(batch, 21, 2, device=device) - 0.5
        visible = torch.ones(batch, 21, dtype=torch.bool, device=device)
        step = train_step_fn(module, loss_fn, images, target, visible, optimizer, "bf16" if cuda else "fp32")
        flops = count_flops(step) / batch
        best = min(_common.timed_on(device, step, repeat, warmup=1))
        rows.append(
            {
                "mode": "train",
                "model": name,
                "batch": batch,
                "images_per_s": batch / best,
                "gflop_per_image": flops / 1e9,
                "achieved_gflops": flops * batch / best / 1e9,
            }
        )
    return rows


def inference_module(cfg, name: str):
    torch.manual_seed(0)
    model = build_model(
        "mle", cfg["backbone"], cfg["stages"], cfg["input_size"], head_channels=cfg["head_channels"]
    ).eval()
    return InferenceWrapper(model).eval() if name == "full" else Backbone(model).eval(), model


def gpu_runners(cfg, name: str, device, compile_: bool) -> dict:
    """Inference runners as a GPU serves them: fp32, bf16 autocast, bf16 weights cast once, and
    torch.compile(mode="reduce-overhead") (CUDA graphs: one launch per call, for batch-1 latency)."""
    cl = torch.channels_last

    def fresh():
        return inference_module(cfg, name)[0].to(device, memory_format=cl)

    fp32, bf16 = fresh(), fresh().to(torch.bfloat16)
    runners = {
        "eager_fp32": lambda x, m=fp32: m(x),
        "eager_bf16_autocast": lambda x, m=fp32: _autocast_call(m, x),
        "eager_bf16_weights": lambda x, m=bf16: m(x.to(torch.bfloat16)),
    }
    if compile_ and name == "full":  # the served model only: each compile takes a minute or more
        compiled = torch.compile(fresh(), mode="reduce-overhead")
        compiled_bf16 = torch.compile(copy.deepcopy(bf16), mode="reduce-overhead")
        runners["compiled_fp32"] = lambda x, m=compiled: m(x)
        runners["compiled_bf16_weights"] = lambda x, m=compiled_bf16: m(x.to(torch.bfloat16))
    return runners


def _autocast_call(module, x):
    with autocast_context(x.device, "bf16"):
        return module(x)


def bf16_weights_error_px(cfg, device) -> float:
    """Largest coordinate difference (input-crop pixels) of bf16 weights against fp32, batch of 32."""
    fp32 = inference_module(cfg, "full")[0].to(device)
    bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
    x = torch.randn(32, 3, cfg["input_size"], cfg["input_size"], device=device)
    with torch.inference_mode():
        return float((fp32(x)[0] - bf16(x.to(torch.bfloat16))[0].float()).abs().max())


def bench_gpu_runtimes(cfg, repeat: int, compile_: bool, device, batches=(1, 32, 256)) -> list[dict]:
    size = cfg["input_size"]
    rows = []
    for name in ("full", "backbone"):
        module = inference_module(cfg, name)[0].to(device)
        with torch.inference_mode():
            flops = count_flops(lambda m=module: m(torch.randn(1, 3, size, size, device=device)))
        for runtime, run in gpu_runners(cfg, name, device, compile_).items():
            for batch in batches:
                x = torch.randn(batch, 3, size, size, device=device).contiguous(
                    memory_format=torch.channels_last
                )
                row = {"mode": "infer", "model": name, "runtime": runtime, "batch": batch}
                # 3 warm-up calls: reduce-overhead records its CUDA graph on the later ones
                rows.append(measure_inference(row, partial(run, x), 3, 10 * repeat, flops, device))
    return rows


def measure_inference(
    row: dict, call: Callable[[], object], warmup: int, repeat: int, flops: float, device: torch.device
) -> dict:
    """``row`` with the throughput and latency of ``repeat`` timed calls (inference mode, the device's
    queue drained around each) after ``warmup`` calls, whose time is ``first_calls_s``; or with the
    ``error`` that stopped it."""
    try:
        started = time.perf_counter()
        with torch.inference_mode():
            for _ in range(warmup):
                call()
            _common.synchronize(device)
            first = time.perf_counter() - started
            times = _common.timed_on(device, call, repeat, 0)
    except Exception as error:  # torch.compile may fail on some set-ups: record why
        row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        traceback.print_exc()
        return row
    best = min(times)
    return {
        **row,
        "images_per_s": row["batch"] / best,
        "latency_ms": best * 1000,
        "median_latency_ms": sorted(times)[len(times) // 2] * 1000,
        "first_calls_s": first,
        "gflop_per_image": flops / 1e9,
        "achieved_gflops": flops * row["batch"] / best / 1e9,
    }


def bench_runtimes(cfg, repeat: int, compile_: bool, batches=(1, 32)) -> list[dict]:
    size = cfg["input_size"]
    rows = []
    for name in ("full", "backbone"):
        module, model = inference_module(cfg, name)
        with torch.inference_mode():
            flops = count_flops(lambda m=module: m(torch.randn(1, 3, size, size)))
        runners = {}
        runners["eager_nchw"] = lambda x, m=module: m(x)
        cl = inference_module(cfg, name)[0].to(memory_format=torch.channels_last)
        runners["eager_channels_last"] = lambda x, m=cl: m(x.contiguous(memory_format=torch.channels_last))
        if compile_:
            compiled = torch.compile(inference_module(cfg, name)[0].to(memory_format=torch.channels_last))
            runners["torch_compile"] = lambda x, m=compiled: m(
                x.contiguous(memory_format=torch.channels_last)
            )
        if name == "full":
            import onnxruntime as ort

            session = ort.InferenceSession(export_onnx(model, size), providers=["CPUExecutionProvider"])
            runners["onnxruntime"] = lambda x, s=session: s.run(None, {"images": x.numpy()})
        for runtime, run in runners.items():
            for batch in batches:
                x = torch.randn(batch, 3, size, size)
                row = {"mode": "infer", "model": name, "runtime": runtime, "batch": batch}
                calls = repeat if batch > 1 else 3 * repeat
                # one warm-up call: it compiles for torch.compile
                rows.append(measure_inference(row, partial(run, x), 1, calls, flops, torch.device("cpu")))
    return rows


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["cpu_demo", "paper"], choices=sorted(CONFIGS))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--matmul-n", type=int, help="peak matmul size (default 4096 on the CPU, 8192 on CUDA)")
    p.add_argument("--gpu-figures", action="store_true", help="the GPU set of figures on the CPU (tests)")
    args = p.parse_args()
    device = _common.bench_device()
    gpu_figures = device.type == "cuda" or args.gpu_figures
    batches = (1, 32, 256) if gpu_figures else (1, 32)
    if args.quick:
        torch.set_num_threads(1)  # --quick only proves the script runs: avoid thread contention
        args.configs, args.repeat, args.no_compile, args.matmul_n = ["tiny"], 1, True, 512
        batches = (1, 4)
    load_before = _common.loadavg()
    if gpu_figures:
        measured = _common.matmul_peak(device, max(3, args.repeat), args.matmul_n)
        peak, args.matmul_n = measured["flops_per_s"] / 1e9, measured["matmul_n"]
    else:
        args.matmul_n = args.matmul_n or 4096
        peak = matmul_gflops(args.matmul_n, max(3, args.repeat))
    results = {"matmul_n": args.matmul_n, "matmul_gflops": peak, "configs": {}}
    results["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    for name in args.configs:
        cfg = CONFIGS[name]
        if gpu_figures:
            train_batch = 4 if args.quick else GPU_TRAIN_BATCH
            rows = bench_training(cfg, args.repeat, device, train_batch) + bench_gpu_runtimes(
                cfg, args.repeat, not args.no_compile, device, batches
            )
            results.setdefault("bf16_weights_max_abs_diff_px", {})[name] = bf16_weights_error_px(cfg, device)
        else:
            rows = bench_training(cfg, args.repeat) + bench_runtimes(
                cfg, args.repeat, not args.no_compile, batches
            )
        for row in rows:
            if "achieved_gflops" in row:
                row["share_of_matmul"] = row["achieved_gflops"] / peak
        results["configs"][name] = {"config": cfg, "rows": rows}
        print(f"\n-- {name}: {cfg}")
        print(_common.table(rows, ["mode", "model", "runtime", "batch", "images_per_s", "latency_ms",
                                   "gflop_per_image", "achieved_gflops", "share_of_matmul"]))  # fmt: skip
    name = f"model_{_common.device_slug(device)}" if gpu_figures else "model"
    path = _common.save(name, args.out, results, load_before, args.quick)
    dtype = "bf16" if device.type == "cuda" else "fp32"
    print(f"\n{dtype} matmul {args.matmul_n}^3: {peak:.1f} GFLOP/s; load average before {load_before}, "
          f"after {_common.loadavg()}; saved {path}")  # fmt: skip


if __name__ == "__main__":
    main()
