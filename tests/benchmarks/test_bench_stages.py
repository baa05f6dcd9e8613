"""benchmarks/bench_stages.py: its stage intervention, and an end-to-end --quick run on the tiny
synthetic RHD set."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mle_hand_pipeline.methods import build_model

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "bench_stages.py"


def bench_stages():
    spec = importlib.util.spec_from_file_location("bench_stages", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("method", ["mle", "cpm"])
def test_staged_forward_replaces_only_what_the_later_stages_receive(method):
    staged_forward = bench_stages().staged_forward
    torch.manual_seed(0)
    model = build_model(method, "resnet18", stages=3, input_size=64, head_channels=16).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain = model(images).heatmaps
        identity = staged_forward(model, images, lambda t, maps: maps).heatmaps
        shifted = staged_forward(model, images, lambda t, maps: maps + 10.0).heatmaps  # untrained maps ~ 0
        after = model(images).heatmaps
    assert torch.equal(identity, plain)
    assert torch.equal(shifted[:, 0], plain[:, 0])  # stage 1 has no feedback input
    assert not torch.equal(shifted[:, 1], plain[:, 1]) and not torch.equal(shifted[:, 2], plain[:, 2])
    assert torch.equal(after, plain)  # the hooks are gone


@pytest.mark.slow
@pytest.mark.parametrize("method", ["integral", "cpm"])
def test_bench_stages_quick(tmp_path, tiny_rhd, method):
    tiny_rhd["hands"].to_parquet(tmp_path / "hands.parquet")
    data = ["--hands", str(tmp_path / "hands.parquet"), "--crops", str(tiny_rhd["crops"])]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--method", method, "--out", str(tmp_path / "out"), *data],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    document = json.loads((tmp_path / "out" / f"stages_{method}_quick.json").read_text())
    first, second = document["stages"]  # --quick: 2 stages
    assert first["stage"] == 1 and "shuffled_moves" not in first
    assert second["shuffled_moves"] >= 0 and 0 <= second["zeroed_pck_0.2"] <= 1
    # The gradient read-outs are real numbers for both model families (not NaN: a slice's .grad).
    last = document["gradients"][-1]
    assert last["fb_grad_s2"] > 0 and last["fb_w_grad_rms_s2"] > 0 and last["feat_w_grad_rms_s2"] > 0
    # A finer feature grid keeps a sharp map's location better (8x8 at 256 px vs 2x2 at 64 px).
    check = {(r["map"], r["spread_cells"]): r["rms_crop_sides"] for r in document["pooling_check"]}
    assert check[(64, 1.0)] < check[(16, 1.0)]
