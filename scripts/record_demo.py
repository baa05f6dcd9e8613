"""Record a finished CPU demo run (the default `kedro run`) as a result folder the README's table reads.

    start=$(date +%s); OMP_WAIT_POLICY=PASSIVE .venv/bin/kedro run; end=$(date +%s)
    .venv/bin/python scripts/record_demo.py docs/figures/cpu_demo_<version>_<cpu kind> \
        --kedro-run-s $((end - start))

copies the run's test metrics, per-keypoint table, training history and figures into the folder and
writes ``run.json``: version, commit, date, the machine (CPU model and instruction set, GPU, library
versions), the command, the best epoch's validation figures and the wall times. Then
``python scripts/doc_figures.py`` rewrites the README's demo table from every ``docs/figures/cpu_demo*``
folder (one per version and machine kind).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from mle_hand_pipeline.machine import describe_machine

ROOT = Path(__file__).resolve().parents[1]
REPORTING = Path("data/08_reporting/rhd")
MODEL_OUTPUT = Path("data/07_model_output/rhd")
FILES = {
    REPORTING / "test_metrics.json": "test_metrics.json",
    REPORTING / "test_per_keypoint.csv": "test_per_keypoint.csv",
    REPORTING / "test_pck_curve.png": "test_pck_curve.png",
    REPORTING / "test_qualitative.png": "test_qualitative.png",
    REPORTING / "training_curves.png": "training_curves.png",
    MODEL_OUTPUT / "train_history.csv": "train_history.csv",
}


def record(project: Path, out: Path, kedro_run_s: float | None) -> dict:
    """Copy the demo's outputs from ``project`` into ``out`` and write ``out/run.json``; returns it."""
    missing = [str(project / source) for source in [*FILES, MODEL_OUTPUT / "training_report.json"]]
    missing = [path for path in missing if not Path(path).is_file()]
    if missing:
        raise FileNotFoundError(f"no finished demo run in {project}: missing {', '.join(missing)}")
    report = json.loads((project / MODEL_OUTPUT / "training_report.json").read_text())
    with (project / MODEL_OUTPUT / "train_history.csv").open(newline="") as history:
        best = next(row for row in csv.DictReader(history) if int(row["epoch"]) == report["best_epoch"])
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=project, capture_output=True, text=True
    ).stdout.strip()
    document = {
        "version": tomllib.loads((project / "pyproject.toml").read_text())["project"]["version"],
        "what": "the default `kedro run` (the CPU demo), split test, read once after choosing on validation",
        "command": "git clone <main> && bash scripts/setup.sh && OMP_WAIT_POLICY=PASSIVE .venv/bin/kedro run",
        "commit": commit or None,
        "date": time.strftime("%Y-%m-%d"),
        "machine": describe_machine(),
        "loadavg_at_record": [round(v, 2) for v in os.getloadavg()],
        "kedro_run_s": kedro_run_s,
        "train_wall_time_s": report["train_wall_time_s"],
        "best_epoch": report["best_epoch"],
        "best_val_nme": float(best["val_nme"]),
        "best_val_pck_0.2": float(best["val_pck_0.2"]),
        "files": sorted(FILES.values()),
    }
    out.mkdir(parents=True, exist_ok=True)
    for source, name in FILES.items():
        shutil.copyfile(project / source, out / name)
    temporary = out / ".run.json.tmp"
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    temporary.replace(out / "run.json")
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the result folder, e.g. docs/figures/cpu_demo_0.6.0_avx2")
    parser.add_argument(
        "--project", type=Path, default=Path.cwd(), help="where `kedro run` ran (default: here)"
    )
    parser.add_argument("--kedro-run-s", type=float, default=None, help="the `kedro run`'s wall time")
    args = parser.parse_args(argv)
    try:
        document = record(args.project, args.out, args.kedro_run_s)
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"recorded {document['version']} ({document['commit']}) in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
