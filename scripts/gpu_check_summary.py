"""The Python half of scripts/gpu_check.sh: load the logged MLflow model on the GPU, and print the
summary table of issue 13 (measured against the goals) from the results folder.

    python scripts/gpu_check_summary.py load-model --project data/gpu_check/project --out load.json
    python scripts/gpu_check_summary.py summary --results data/gpu_check/results
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any


def load_model_check(project: Path, out: Path) -> None:
    """Load the newest train_rhd run's logged model with ``export.load_logged_model`` on the inference
    device (the GPU when present), run a batch, compare with the CPU copy; write the outcome as JSON."""
    import mlflow
    import torch

    from mle_hand_pipeline.export import load_logged_model
    from mle_hand_pipeline.training.inference import inference_device

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(
        search_all_experiments=True,
        filter_string="tags.mlflow.runName = 'train_rhd'",
        order_by=["attributes.start_time DESC"],
        output_format="list",
    )
    if not runs:
        sys.exit(f"no train_rhd run in {project / 'mlflow.db'}")
    uri = f"runs:/{runs[0].info.run_id}/model"
    size = int(mlflow.models.get_model_info(uri).signature.inputs.inputs[0].shape[-1])
    device = inference_device()
    started = time.perf_counter()
    model = load_logged_model(uri, device)
    load_s = time.perf_counter() - started
    images = torch.randn(4, 3, size, size)
    with torch.no_grad():
        on_device = model(images.to(device)).float().cpu()
        on_cpu = load_logged_model(uri, "cpu")(images)
    pyfunc = mlflow.pyfunc.load_model(uri, model_config={"device": "cpu"})  # the README's GPU-machine call
    pyfunc_shape = list(pyfunc.predict(images.numpy()).shape)
    result = {
        "uri": uri,
        "device": str(device),
        "load_s": load_s,
        "output_shape": list(on_device.shape),
        "max_abs_diff_to_cpu_px": float((on_device - on_cpu).abs().max()),
        "pyfunc_cpu_output_shape": pyfunc_shape,
    }
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _newest(folder: Path, pattern: str) -> dict[str, Any] | None:
    files = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime)
    return _read(files[-1]) if files else None


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def summary(results: Path) -> str:
    """Issue 13's table, re-measured: one row per figure with its goal (markdown)."""
    rows: list[tuple[str, str, str]] = []
    step = _newest(results, "train_step_*.json")
    compiled = _newest(results / "compile_loss", "train_step_*.json")
    model = _newest(results, "model_*.json")
    load = _read(results / "load_logged_model.json")
    device = (step or model or {}).get("device", "unknown")
    if step:
        rows += [
            (
                f"{step['matmul']['matmul_dtype']} matmul {step['matmul']['matmul_n']}^3 (reference peak)",
                f"{_fmt(step.get('matmul_peak_tflops'))} TFLOP/s",
                "",
            ),
            (
                f"training step alone ({step['config']['backbone']}, {step['config']['input_size']} px, "
                f"batch {step['config']['batch']})",
                f"{_fmt(step.get('step_alone_images_per_s'))} img/s = {_fmt(step.get('step_alone_tflops'))} "
                f"TFLOP/s = {_fmt(step.get('step_alone_share_of_peak'))} of peak",
                ">= 0.35 of peak",
            ),
            (
                "the same inside training.engine.fit (last epoch)",
                f"{_fmt(step.get('trainer_images_per_s'))} img/s = "
                f"{_fmt(step.get('trainer_over_step_alone'))} of the step alone",
                ">= 0.95",
            ),
            ("GPU busy during fit (NVML)", _fmt(step.get("gpu_busy_share_during_fit")), ">= 0.9"),
            (
                "flows + loss, forward + backward",
                f"{_fmt(step.get('flows_loss_fwd_bwd_ms'))} ms = "
                f"{_fmt(step.get('flows_loss_share_of_step_alone'))} of the step alone",
                "<= 0.05",
            ),
        ]
    if compiled:
        rows += [
            (
                "with train.compile=loss: flows + loss",
                f"{_fmt(compiled.get('flows_loss_fwd_bwd_ms'))} ms = "
                f"{_fmt(compiled.get('flows_loss_share_of_step_alone'))} of the step alone",
                "<= 0.05",
            ),
            (
                "with train.compile=loss: step alone, fit loop, compile time",
                f"{_fmt(compiled.get('step_alone_images_per_s'))} img/s, "
                f"{_fmt(compiled.get('trainer_images_per_s'))} img/s, "
                f"{_fmt(compiled.get('compile_time_s'))} s",
                "decides train.compile's default",
            ),
        ]
    if model:
        peak = model["matmul_gflops"]
        for config, body in model["configs"].items():
            infer = [
                r for r in body["rows"] if r["mode"] == "infer" and r["model"] == "full" and "error" not in r
            ]
            for batch in sorted({r["batch"] for r in infer}):
                at = {r["runtime"]: r for r in infer if r["batch"] == batch}
                if batch == 1:
                    text = ", ".join(f"{k} {_fmt(v['latency_ms'])} ms" for k, v in at.items())
                    rows.append((f"inference {config}, batch 1 latency", text, "<= 3 ms"))
                else:
                    best = max(at.values(), key=lambda r: r["images_per_s"])
                    rows.append(
                        (
                            f"inference {config}, batch {batch} (best: {best['runtime']})",
                            f"{_fmt(best['images_per_s'])} img/s = "
                            f"{_fmt(best['achieved_gflops'] / peak)} of peak",
                            ">= 0.4 of peak" if batch >= 256 else "",
                        )
                    )
            errors = [f"{r['runtime']} b{r['batch']}: {r['error']}" for r in body["rows"] if "error" in r]
            if errors:
                rows.append((f"inference {config}: failures", "; ".join(errors)[:300], ""))
        diff = model.get("bf16_weights_max_abs_diff_px")
        if diff:
            rows.append(("bf16 weights vs fp32, max coordinate difference (px)", json.dumps(diff), ""))
    history = results / "train_history.csv"
    if history.is_file():
        lines = list(csv.DictReader(history.open()))
        rows.append(
            ("kedro train_rhd --env=paper, last epoch", f"{float(lines[-1]['images_per_s']):.0f} img/s", "")
        )
    metrics = _read(results / "test_metrics.json")
    if metrics:
        rows.append(
            ("its test NME / PCK@0.2", f"{_fmt(metrics.get('nme'))} / {_fmt(metrics.get('pck_0.2'))}", "")
        )
    if load:
        rows.append(
            (
                "logged MLflow model loaded with export.load_logged_model",
                f"on {load['device']}, output {load['output_shape']}, max diff to CPU "
                f"{_fmt(load['max_abs_diff_to_cpu_px'])} px",
                "loads on the GPU",
            )
        )
    times = results / "times.txt"
    if times.is_file():
        text = ", ".join(
            f"{name} {seconds} s" + ("" if status == "0" else f" (FAILED {status})")
            for name, seconds, status in (line.split() for line in times.read_text().splitlines())
        )
        rows.append(("step wall times", text, ""))
    lines = [f"# GPU check on {device}", "", "| what | measured | goal |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("load-model")
    load.add_argument("--project", type=Path, required=True)
    load.add_argument("--out", type=Path, required=True)
    report = commands.add_parser("summary")
    report.add_argument("--results", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "load-model":
        load_model_check(args.project.resolve(), args.out)
    else:
        print(summary(args.results))


if __name__ == "__main__":
    main()
