"""Each benchmark script runs end to end with --quick (tiny sizes). No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def rhd_root(tiny_rhd) -> Path:
    return tiny_rhd["root"]  # 36 + 10 synthetic RHD images, rendered once per session


def _run(script: str, out: Path, *args: str) -> dict:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", "--out", str(out), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    (result,) = out.glob("*_quick.json")
    document = json.loads(result.read_text())
    assert document["quick"] is True and len(document["loadavg_before"]) == 3
    assert document["machine"]["logical_cpus"] >= 1
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    assert document["commit"].split("+")[0] == head.stdout.strip()  # the code the figures came from
    assert "saved" in done.stdout  # the table was printed
    return document


@pytest.mark.slow
def test_bench_preprocess(tmp_path, rhd_root):
    document = _run("bench_preprocess.py", tmp_path, "--root", str(rhd_root))
    assert [row["workers"] for row in document["rows"]] == [1, 2]
    assert document["rows"][0]["crops"] > 0 and document["outputs_identical_across_workers"] is True


@pytest.mark.slow
def test_bench_loader(tmp_path, rhd_root):
    document = _run("bench_loader.py", tmp_path, "--root", str(rhd_root))
    assert all(row["crops_per_s"] > 0 for row in document["per_worker"])
    assert {row["workers"] for row in document["dataloader"]} == {1, 2}


def test_bench_crop_checks(tmp_path, tiny_rhd):
    document = _run("bench_crop_checks.py", tmp_path, "--store", str(tiny_rhd["crops"]))
    assert [row["step"] for row in document["rows"]] == ["read", "check"]
    assert document["rows"][0]["crops"] == document["split_crops"] > 0
    assert document["full_check_s"] > 0 and document["crop_bytes"] == 64 * 64 * 3


@pytest.mark.slow
def test_bench_train_step(tmp_path, rhd_root):
    # --gpu-figures runs the GPU-only measurements on the CPU too, so the GPU check's first run works.
    document = _run("bench_train_step.py", tmp_path, "--root", str(rhd_root), "--gpu-figures")
    phases = [row["phase"] for row in document["phases"]]
    assert phases == ["data", "augment", "forward", "loss", "backward", "optimizer", "step (total)"]
    assert 0 < document["flows_loss_share"] and document["images_per_s"] > 0
    assert 0 < document["step_alone_share_of_peak"] and document["train_gflop_per_image"] > 0
    assert document["trainer_images_per_s"] > 0 and document["device"] == "cpu"


@pytest.mark.slow
def test_bench_model_gpu_figures_run_on_the_cpu(tmp_path):
    document = _run("bench_model.py", tmp_path, "--gpu-figures")
    rows = document["configs"]["tiny"]["rows"]
    runtimes = {r["runtime"] for r in rows if r["mode"] == "infer" and "error" not in r}
    assert runtimes == {"eager_fp32", "eager_bf16_autocast", "eager_bf16_weights"}
    assert document["device"] == "cpu" and "tiny" in document["bf16_weights_max_abs_diff_px"]


@pytest.mark.slow
def test_bench_model(tmp_path):
    document = _run("bench_model.py", tmp_path)
    rows = document["configs"]["tiny"]["rows"]
    assert document["matmul_gflops"] > 0
    assert {(r["mode"], r["model"]) for r in rows} >= {
        ("train", "full"),
        ("train", "backbone"),
        ("infer", "full"),
    }
    runtimes = {r.get("runtime") for r in rows if r["mode"] == "infer" and "error" not in r}
    assert {"eager_nchw", "eager_channels_last", "onnxruntime"} <= runtimes


def _bench_learning(tmp_path, tiny_rhd, *args: str) -> dict:
    """bench_learning.py --quick on the tiny RHD set, its result in ``tmp_path/out``."""
    tiny_rhd["hands"].to_parquet(tmp_path / "hands.parquet")
    hands = str(tmp_path / "hands.parquet")
    return _run(
        "bench_learning.py", tmp_path / "out", "--hands", hands, "--crops", str(tiny_rhd["crops"]), *args
    )


@pytest.mark.slow
def test_bench_learning(tmp_path, tiny_rhd):
    document = _bench_learning(tmp_path, tiny_rhd)
    (variant,) = document["variants"]
    assert [row["model"] for row in variant["rows"]] == ["untrained", "trained (best val)"]
    assert len(variant["history"]) == 2 and variant["parameters"]["train"]["sigma_warmup_epochs"] == 1
    elapsed = [row["elapsed_s"] for row in variant["history"]]
    assert 0 < elapsed[0] < elapsed[1] <= variant["train_wall_s"]
    trained = variant["rows"][1]
    tips = [key for key in trained if key.startswith("pck_0.2_") and key.endswith("_tip")]
    assert len(tips) == 5 and "train_pck_0.2" in trained
    assert all(0 <= trained[key] <= 1 for key in ["pck_0.2", "train_pck_0.2", *tips])
    # chosen on validation: the test split is read only with --read-test
    assert document["split"] == variant["split"] == "val" and "test_crops" not in document
    shrinkage = ["hand_spread", "centre_slope", "stage2_hand_spread", "argmax_pck_0.2", "stage2_max_prob"]
    assert all(key in trained for key in shrinkage)


@pytest.mark.slow
def test_bench_learning_reads_test_only_when_asked(tmp_path, tiny_rhd):
    document = _bench_learning(tmp_path, tiny_rhd, "--read-test")
    (variant,) = document["variants"]
    assert document["split"] == variant["split"] == "test" and document["test_crops"] > 0
    # the validation figures the choice was made on are in the result beside the test figures
    assert set(variant["validation"]) >= {"pck_0.2", "nme", "pck_0.2_pinky_tip"}


@pytest.mark.slow
def test_bench_learning_compares_variants_in_one_run_and_plots_them(tmp_path, tiny_rhd):
    document = _bench_learning(
        tmp_path,
        tiny_rhd,
        "--variant",
        "a:model.method=integral",
        "--variant",
        "b:model.method=heatmap_l2,train.lr_milestones=[1]",
        "--name",
        "two",
    )
    variants = {v["name"]: v for v in document["variants"]}
    for v in variants.values():  # scored on validation: the row is the validation figures
        assert v["validation"] == {k: v["rows"][-1][k] for k in v["validation"]}
    assert variants["a"]["parameters"]["model"]["method"] == "integral"
    assert variants["b"]["parameters"]["model"]["method"] == "heatmap_l2"
    assert variants["b"]["parameters"]["train"]["lr_milestones"] == [1]
    assert (tmp_path / "out/learning_two_quick.png").stat().st_size > 0


def test_bench_learning_refuses_a_bad_variant_before_training_any(tmp_path):
    hands = tmp_path / "hands.parquet"
    hands.write_bytes(b"")  # never read: the parameters are checked first
    script = str(BENCHMARKS / "bench_learning.py")
    variants = ["--variant", "fine:train.lr=1.0e-3", "--variant", "typo:train.lr=2e-3"]
    done = subprocess.run(
        [sys.executable, script, "--out", str(tmp_path / "out"), "--hands", str(hands), *variants],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "train.lr must be a positive number" in done.stderr and "'2e-3'" in done.stderr
    assert not (tmp_path / "out").exists()  # no variant trained, nothing saved


def test_bench_learning_saves_each_variant_as_it_ends(tmp_path, monkeypatch):
    """A variant that fails (or a run stopped) after others ended loses none of theirs."""
    spec = importlib.util.spec_from_file_location("bench_learning", BENCHMARKS / "bench_learning.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    hands = tmp_path / "hands.parquet"
    pd.DataFrame({"split": ["train", "val", "test"]}).to_parquet(hands)

    def run_variant(name, block, hands, crops, split_name):
        if name == "breaks":
            raise RuntimeError("out of memory")
        row = {"model": "trained (best val)", "pck_0.2": 0.5}
        return {"name": name, "parameters": block, "train_wall_s": 1.0, "rows": [row], "history": []}

    monkeypatch.setattr(bench, "run_variant", run_variant)
    argv = ["bench_learning.py", "--out", str(tmp_path), "--hands", str(hands), "--name", "partial"]
    monkeypatch.setattr(sys, "argv", [*argv, "--variant", "ends:train.lr=2.0e-3", "--variant", "breaks:"])
    with pytest.raises(RuntimeError, match="out of memory"):
        bench.main()
    document = json.loads((tmp_path / "learning_partial.json").read_text())
    (saved,) = document["variants"]
    assert saved["name"] == "ends" and saved["changes"] == {"train.lr": 2.0e-3}
    assert document["train_crops"] == 1 and not list(tmp_path.glob(".*.tmp"))


def test_bench_learning_runs_earlier_demos_with_the_training_images_they_saw(tmp_path, monkeypatch):
    """On their own data the earlier demos are themselves; on more crops, fewer epochs, same shares."""
    spec = importlib.util.spec_from_file_location("bench_learning", BENCHMARKS / "bench_learning.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    schedule = {"epochs": 12, "crops": 2255, "lr_milestone": 10, "sigma_warmup_epochs": 4}
    assert bench.same_images(schedule, 2255) == {
        "train.epochs": 12,
        "train.lr_milestones": [10],
        "train.sigma_warmup_epochs": 4,
    }
    assert bench.same_images(schedule, 4497) == {
        "train.epochs": 6,
        "train.lr_milestones": [5],
        "train.sigma_warmup_epochs": 2,
    }
    assert bench.same_images(schedule, 10**6)["train.epochs"] == 1  # never zero epochs
    demo = bench.suites(562)["demo"]
    old = demo["0.1.0 demo (mle, stride 32)"]
    assert (old["train.epochs"], old["train.lr_milestones"], old["model.backbone_stride"]) == (60, [50], 32)
    assert demo["demo (mle)"] == {}  # the default, as conf/base has it
    blocks = {name: bench.variant_parameters(changes) for name, changes in demo.items()}  # all valid
    for name in (
        "0.1.0 demo (mle, stride 32)",
        "0.2.0 demo (mle, 5 stages)",
        "0.3.0 demo (mle, plain soft-argmax)",
    ):
        model = blocks[name]["model"]  # the earlier demos decoded the paper's way
        assert model["decode_window"] == 0 and model["loss"]["heatmap_prior"] == 0


def test_bench_flows(tmp_path):
    document = _run("bench_flows.py", tmp_path)
    assert document["max_abs_diff_log_prob"] < 1e-4  # the batched prototype computes the same densities
    assert [row["implementation"] for row in document["rows"]] == ["per-stage loop", "one batched call"]
    assert all(row["gflop"] > 0 and row["ms_fwd_bwd"] > 0 for row in document["rows"])


def test_summarise_learning_pools_seeds_of_one_configuration_and_pairs_them(tmp_path):
    """Variants differing only in their seed form a group named by how it differs from the demo."""
    spec = importlib.util.spec_from_file_location("bench_learning", BENCHMARKS / "bench_learning.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    def variant(changes: dict, pck: float) -> dict:
        row = {"model": "trained (best val)", "pck_0.2": pck, "nme": 1 - pck}
        parameters = bench.variant_parameters(changes)
        return {
            "name": str(changes),
            "parameters": parameters,
            "split": "val",
            "rows": [row],
            "changes": changes,
        }

    files = []
    for seed, (own, other) in enumerate([(0.70, 0.60), (0.72, 0.61), (0.74, 0.65)]):
        path = tmp_path / f"learning_{seed}.json"
        variants = [
            variant({"train.seed": seed}, own),
            variant({"model.method": "cpm", "train.seed": seed}, other),
        ]
        path.write_text(json.dumps({"variants": variants}))
        files.append(str(path))
    script = str(BENCHMARKS / "summarise_learning.py")
    done = subprocess.run(
        [
            sys.executable,
            script,
            *files,
            "--baseline",
            "model.method=cpm",
            "--name",
            "t",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads((tmp_path / "seeds_t.json").read_text())
    summary = {row["group"]: row for row in document["summary"]}
    assert set(summary) == {"default", "model.method=cpm"} and summary["default"]["n_seeds"] == 3
    assert summary["default"]["pck_0.2_mean"] == pytest.approx(0.72)
    assert summary["default"]["pck_0.2_ci_low"] < 0.72 < summary["default"]["pck_0.2_ci_high"]
    (paired,) = [row for row in document["paired"] if row["group"] == "default"]
    assert paired["pck_0.2_mean"] == pytest.approx(0.10)  # 0.10, 0.11, 0.09 by seed
    assert document["split"] == "val"
