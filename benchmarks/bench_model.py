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
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
import _common

from mle_hand_pipeline.export import export_onnx
from mle_hand_pipeline.methods import build_loss, build_model
from mle_hand_pipeline.models import InferenceWrapper

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


def train_step_fn(model, loss_fn, images, target, visible, optimizer):
    def step():
        optimizer.zero_grad(set_to_none=True)
        if loss_fn is None:  # bare backbone: any scalar of the features will do
            loss = model(images).mean()
        else:
            loss = loss_fn(model(images), target, visible).total
        loss.backward()
        optimizer.step()

    return step


def bench_training(cfg, repeat: int) -> list[dict]:
    size, batch = cfg["input_size"], cfg["train_batch"]
    rows = []
    for name in ("full", "backbone"):
        torch.manual_seed(0)
        model = build_model("mle", cfg["backbone"], cfg["stages"], size, head_channels=cfg["head_channels"])
        loss_fn = build_loss("mle", cfg["stages"]) if name == "full" else None
        module = model if name == "full" else Backbone(model)
        params = list(module.parameters()) + (list(loss_fn.parameters()) if loss_fn else [])
        optimizer = torch.optim.Adam(params, lr=1e-4)
        module.train()
        images = torch.randn(batch, 3, size, size)
        target = torch.rand(batch, 21, 2) - 0.5
        visible = torch.ones(batch, 21, dtype=torch.bool)
        step = train_step_fn(module, loss_fn, images, target, visible, optimizer)
        flops = count_flops(step) / batch
        best = min(_common.timed(step, repeat, warmup=1))
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
                try:
                    started = time.perf_counter()
                    with torch.inference_mode():
                        run(x)  # warm-up (compiles for torch.compile)
                        first = time.perf_counter() - started
                        times = _common.timed(lambda r=run, x=x: r(x), repeat if batch > 1 else 3 * repeat, 0)
                except Exception as error:  # torch.compile may fail on some set-ups: record why
                    row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
                    traceback.print_exc()
                    rows.append(row)
                    continue
                best = min(times)
                row.update(
                    images_per_s=batch / best,
                    latency_ms=best * 1000,
                    median_latency_ms=sorted(times)[len(times) // 2] * 1000,
                    first_call_s=first,
                    gflop_per_image=flops / 1e9,
                    achieved_gflops=flops * batch / best / 1e9,
                )
                rows.append(row)
    return rows


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["cpu_demo", "paper"], choices=sorted(CONFIGS))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--matmul-n", type=int, default=4096)
    args = p.parse_args()
    batches = (1, 32)
    if args.quick:
        torch.set_num_threads(1)  # --quick only proves the script runs: avoid thread contention
        args.configs, args.repeat, args.no_compile, args.matmul_n = ["tiny"], 1, True, 512
        batches = (1, 4)
    load_before = _common.loadavg()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cpu":
        print("note: this script measures the CPU path (the model is not moved to CUDA)")
    peak = matmul_gflops(args.matmul_n, max(3, args.repeat))
    results = {"matmul_n": args.matmul_n, "matmul_gflops": peak, "configs": {}}
    for name in args.configs:
        cfg = CONFIGS[name]
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
    path = _common.save("model", args.out, results, load_before, args.quick)
    print(f"\nfp32 matmul {args.matmul_n}^3: {peak:.1f} GFLOP/s; load average before {load_before}, "
          f"after {_common.loadavg()}; saved {path}")  # fmt: skip


if __name__ == "__main__":
    main()
