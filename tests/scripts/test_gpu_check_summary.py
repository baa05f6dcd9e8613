"""scripts/gpu_check_summary.py: the GPU check's table from a results folder (no GPU needed)."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "scripts" / "gpu_check_summary.py"


def _summary_module():
    spec = importlib.util.spec_from_file_location("gpu_check_summary", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_puts_each_figure_against_its_goal_and_names_failures(tmp_path):
    step = {
        "device": "NVIDIA H200",
        "config": {"backbone": "resnet50", "input_size": 256, "batch": 128},
        "matmul": {"matmul_dtype": "bfloat16", "matmul_n": 8192},
        "matmul_peak_tflops": 784.0,
        "step_alone_images_per_s": 1695.0,
        "step_alone_tflops": 132.0,
        "step_alone_share_of_peak": 0.17,
        "trainer_images_per_s": 1272.0,
        "trainer_over_step_alone": 0.75,
        "gpu_busy_share_during_fit": None,
        "flows_loss_fwd_bwd_ms": 20.5,
        "flows_loss_share_of_step_alone": 0.27,
    }
    (tmp_path / "train_step_nvidia_h200_paper.json").write_text(json.dumps(step))
    rows = [
        {"mode": "infer", "model": "full", "runtime": "eager_fp32", "batch": 1, "latency_ms": 7.3,
         "images_per_s": 137.0, "achieved_gflops": 3500.0},
        {"mode": "infer", "model": "full", "runtime": "eager_bf16_weights", "batch": 256, "latency_ms": 36.0,
         "images_per_s": 7038.0, "achieved_gflops": 180000.0},
        {"mode": "infer", "model": "full", "runtime": "compiled_fp32", "batch": 1,
         "error": "BackendCompilerFailed: x"},
    ]  # fmt: skip
    model = {"device": "NVIDIA H200", "matmul_gflops": 784000.0, "configs": {"paper": {"rows": rows}}}
    (tmp_path / "model_nvidia_h200.json").write_text(json.dumps(model))
    (tmp_path / "times.txt").write_text("bench_model 120 0\ntrain_rhd_paper 200 1\n")

    table = _summary_module().summary(tmp_path)

    assert table.startswith("# GPU check on NVIDIA H200")
    assert "| 1.7e+03 img/s = 132 TFLOP/s = 0.17 of peak | >= 0.35 of peak |" in table
    assert "0.75 of the step alone | >= 0.95 |" in table
    assert "| GPU busy during fit (NVML) | not measured | >= 0.9 |" in table
    assert "eager_fp32 7.3 ms | <= 3 ms |" in table
    assert "7.04e+03 img/s = 0.23 of peak | >= 0.4 of peak |" in table
    assert "compiled_fp32 b1: BackendCompilerFailed" in table
    assert "train_rhd_paper 200 s (FAILED 1)" in table
