"""Shared helpers of the benchmark scripts: machine description, load average, timing, JSON + table.

Every result file records the machine, the library versions, the command line and
``os.getloadavg()`` before and after the measurement: the benchmark machine may be shared, and a
figure taken under load is not comparable to one taken on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mle_hand_pipeline.machine import describe_machine

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC_RHD = REPO / "data/01_raw/synthetic/RHD_published_v2"
RESULTS = REPO / "benchmarks" / "results"


def machine() -> dict[str, Any]:
    """The library's machine description (CPU, instruction set, GPU, versions) plus the platform, the
    OpenMP settings and onnxruntime's version."""
    info = describe_machine()
    info.update(
        platform=platform.platform(),
        # OpenMP settings change CPU figures a lot on a busy machine (see docs/benchmarks.md).
        env={k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")},
    )
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


def commit() -> str | None:
    """The checkout's commit, with ``+changes`` when tracked files differ from it (None outside git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}+changes" if changed else head


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark has: --quick (tiny sizes, proves it runs) and --out."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks the script runs, figures mean nothing"
    )
    p.add_argument(
        "--out", type=Path, default=RESULTS, help=f"folder for the JSON result (default {RESULTS})"
    )
    return p


def timed(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> list[float]:
    """Wall times (s) of ``repeat`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def save(name: str, out: Path, payload: dict[str, Any], load_before: list[float], quick: bool) -> Path:
    """Write ``out/<name>.json`` (``<name>_quick.json`` for --quick) with machine and load average."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}{'_quick' if quick else ''}.json"
    document = {
        "benchmark": name,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "quick": quick,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": commit(),
        "machine": machine(),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        **payload,
    }
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(document, indent=2, default=str))
    temporary.replace(path)  # atomic: a benchmark stopped while saving leaves the previous file whole
    return path


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain fixed-width table of ``rows`` (floats with 3 significant digits)."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        return "-" if value is None else str(value)

    cells = [[fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def report(
    name: str, rows: Sequence[dict[str, Any]], path: Path, load_before: list[float], **notes: Any
) -> None:
    print(f"== {name}  (load average before {load_before}, after {loadavg()})")
    print(table(rows))
    for key, value in notes.items():
        print(f"{key}: {value}")
    print(f"saved {path}")


def synthetic_rhd_hands(root: Path, limit: int = 0):
    """The hands of the RHD-layout set at ``root`` kept by the preprocessing filter (first ``limit``)."""
    from mle_hand_pipeline.datasets.records import filter_visible
    from mle_hand_pipeline.datasets.rhd import read_rhd

    if not root.is_dir():
        sys.exit(f"{root} not found: run `kedro run --pipelines=synthetic_data` first (or pass --root)")
    hands, _ = read_rhd(root, ["training", "evaluation"], val_ratio=0.1, seed=42, on_bad_sample="raise")
    hands, _ = filter_visible(hands, 10)
    return hands.iloc[:limit].reset_index(drop=True) if limit else hands


# --- CUDA: the same scripts measure on the GPU when there is one --------------------------------------


def bench_device():
    """The device the benchmarks measure on: the first CUDA GPU when there is one, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize(device) -> None:
    """Wait for the device's queue (CUDA work is asynchronous: a host clock alone times the launches)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_on(device, fn: Callable[[], Any], repeat: int, warmup: int = 1) -> list[float]:
    """:func:`timed` with the device's queue drained before each clock reading."""

    def run() -> None:
        fn()
        synchronize(device)

    synchronize(device)
    return timed(run, repeat, warmup)


def matmul_peak(device, repeat: int = 5, n: int | None = None) -> dict[str, Any]:
    """The practical peak: best FLOP/s of an (n, n) @ (n, n) matmul, bf16 on CUDA (n = 8192), fp32 on
    the CPU (n = 4096), measured in the same run as the figures compared with it."""
    import torch

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = n or (8192 if device.type == "cuda" else 4096)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = min(timed_on(device, lambda: torch.mm(a, b), repeat, warmup=2))
    return {"matmul_n": n, "matmul_dtype": str(dtype).removeprefix("torch."), "flops_per_s": 2 * n**3 / best}


class GpuBusy:
    """Share of wall time the GPU was busy while the block ran, sampled every ``period`` s through NVML
    (``torch.cuda.utilization``: the share of the last sample window in which a kernel ran), or through
    ``nvidia-smi`` where pynvml is missing (the GPU machine has none). ``share`` is None on the CPU or
    where neither is available."""

    def __init__(self, device, period: float = 0.2):
        self.device, self.period, self.samples, self.share = device, period, [], None
        self._stop = None

    def _probe(self) -> float | None:
        import torch

        try:
            return float(torch.cuda.utilization(self.device))
        except Exception:  # no pynvml: ask nvidia-smi
            pass
        import subprocess

        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        query = [
            "nvidia-smi",
            "--query-gpu=utilization.gpu",
            "--format=csv,noheader,nounits",
            f"--id={index}",
        ]
        try:
            done = subprocess.run(query, capture_output=True, text=True, timeout=5, check=True)
            return float(done.stdout.strip().splitlines()[0])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return None

    def __enter__(self) -> GpuBusy:
        import threading

        if self.device.type != "cuda" or self._probe() is None:
            return self
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.wait(self.period):
                value = self._probe()
                if value is not None:
                    self.samples.append(value)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
            if self.samples:
                self.share = sum(self.samples) / len(self.samples) / 100


def device_slug(device) -> str:
    """The device's name for result file names, e.g. ``nvidia_h200`` (``cpu`` on the CPU)."""
    import re

    import torch

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
