"""What a result was computed on: the CPU, the instruction set torch dispatches to, the GPU, versions.

A CPU training run is bit-deterministic on one kind of machine only: PyTorch, oneDNN and MKL pick
their convolution and matmul kernels by the CPU (its vendor and instruction set: AVX2, AVX-512, ...),
and kernels that sum in another order round differently. Over a 60-epoch run those last-bit
differences grow into different weights: the CPU demo gives other test metrics on an AMD EPYC than
on an Intel Xeon with AVX-512, and others again on that Xeon made to dispatch to AVX2
(docs/results.md). Runs record this description so that two results can be told apart by machine,
not only by code.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

#: Libraries whose version can change a result (decoding, resampling, numerics).
VERSIONED = ("torch", "torchvision", "numpy", "pillow", "scipy")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # no /proc (macOS, Windows)
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> dict[str, Any]:
    """CPU model, the instruction set ATen dispatches to (``ATEN_CPU_CAPABILITY`` can lower it), torch
    threads and their OpenMP wait policy, logical CPUs, CUDA device name (None without one), Python and
    library versions."""
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        # how OpenMP threads wait (the package's choice on import, or the user's): up to 1.7x the
        # CPU training speed on 2 cores, never the results
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "logical_cpus": os.cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        **versions,
    }
