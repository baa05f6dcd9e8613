"""Holm's correction over a finished grid report's comparisons, from its committed tables alone.

The grid report's verdict (``kedro run --pipelines=compare_report_<dataset>``) ends with this section
since version 0.5.0; a report folder written before (``runs.csv``, ``summary.csv``, ``stages.csv``)
gets it here without MLflow or retraining:

    python scripts/holm_correction.py docs/figures/compare_rhd_cpu_0.3.0

writes ``<folder>/holm.md``: how many comparisons the verdict made, and which of its claims survive
Holm's correction at family-wise level 5 % (:func:`mle_hand_pipeline.grid.report.comparisons`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

from mle_hand_pipeline.grid import report as R

# the grid's report metrics and which way is better (conf/base/parameters_compare.yml)
METRICS = {
    "test_nme": False,
    "test_pck_0.2": True,
    "test_pck_0.05": True,
    "test_auc_0.2": True,
    "test_epe_px": False,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a grid report folder with runs.csv and summary.csv")
    folder = parser.parse_args(argv).folder
    table = pd.read_csv(folder / "runs.csv")
    summary = pd.read_csv(folder / "summary.csv")
    stages = pd.read_csv(folder / "stages.csv") if (folder / "stages.csv").exists() else None
    metrics = {m: higher for m, higher in METRICS.items() if f"{m}_mean" in summary}
    family = R.comparisons(summary, table, metrics, stages)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    lines = [
        f"# Holm's correction for `{folder.name}`",
        "",
        f"Written by `python scripts/holm_correction.py {folder.as_posix()}` at commit "
        f"{commit or 'unknown'} from the folder's runs.csv, summary.csv and stages.csv.",
        *R.holm_section(family),
        "",
    ]
    out = folder / "holm.md"
    temporary = out.with_name(f".{out.name}.tmp")
    temporary.write_text("\n".join(lines), encoding="utf-8")
    temporary.replace(out)
    print(f"{out}: {int(family['claimed'].sum())} claims, {int(family['survives'].sum())} survive Holm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
