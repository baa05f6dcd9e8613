"""Every figure table in the documentation comes from a committed result file.

Two marks, in README.md, DEVELOPERS.md, CHANGELOG.md, benchmarks/README.md and docs/*.md:

``<!-- figures: PATH [PATH ...] -->`` on the line above a table (blank lines between allowed)
    names the result files (JSON, CSV, markdown written by the code that measured) the table was
    read from. Every decimal figure in the table must equal a number of those files at the figure's
    printed precision (``0.740`` matches ``0.73968...``; a sign is kept, a leading ``+`` dropped).
``<!-- generated: NAME -->`` ... ``<!-- end generated -->``
    a block this script writes from result files or the typed parameter blocks (:data:`RENDERERS`);
    it must be what the renderer writes now, so a new result file changes the documentation only by
    re-running this script.

A table holding decimal figures with neither mark, a figure not found in its files, a named file
that does not exist and a stale generated block are errors. Version numbers (``0.4.0``), metric
names (``PCK@0.2``) and inline code (a setting's value) are not figures; integers (epochs, crop
counts) are not checked.

Usage::

    python scripts/doc_figures.py            # rewrite the generated blocks
    python scripts/doc_figures.py --check    # list every problem, exit 1 if there is one
"""

from __future__ import annotations

import argparse
import bisect
import csv
import dataclasses
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from mle_hand_pipeline.parameters import (
    CompareParams,
    EvaluateParams,
    PredictParams,
    execution_only_keys,
    schema_fields,
)
from mle_hand_pipeline.training.checkpoint import ModelSpec
from mle_hand_pipeline.training.engine import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
TOP_DOCS = ("README.md", "DEVELOPERS.md", "CHANGELOG.md", "benchmarks/README.md")

FIGURES_MARK = re.compile(r"^\s*<!--\s*figures:\s*(.+?)\s*-->\s*$")
GENERATED_START = re.compile(r"^\s*<!--\s*generated:\s*([\w.-]+)\s*-->\s*$")
GENERATED_END = re.compile(r"^\s*<!--\s*end generated\s*-->\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
LINK_TARGET = re.compile(r"\]\([^)]*\)")
INLINE_CODE = re.compile(r"`[^`]*`")
VERSION = re.compile(r"\bv?\d+\.\d+\.\d+\b")
# A decimal figure: not part of a word, a metric name (PCK@0.2) or a longer dotted number.
TABLE_FIGURE = re.compile(r"(?<![\w@.])[-+\u2212]?\d+\.\d+(?![\d.]*\d)")
SOURCE_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def documents(root: Path = ROOT) -> list[Path]:
    """The documentation files whose tables are checked."""
    return sorted(
        [*(root / name for name in TOP_DOCS if (root / name).exists()), *(root / "docs").glob("*.md")]
    )


@dataclass(frozen=True)
class Figure:
    text: str  # as printed
    value: float
    decimals: int


def table_figures(line: str) -> list[Figure]:
    """The decimal figures of one table row (link targets, inline code such as a parameter's value,
    versions and metric names left out)."""
    line = VERSION.sub(" ", LINK_TARGET.sub("]", INLINE_CODE.sub(" ", line)))
    figures = []
    for match in TABLE_FIGURE.finditer(line):
        text = match.group().replace("\u2212", "-").lstrip("+")
        figures.append(Figure(match.group(), float(text), len(text.split(".")[1])))
    return figures


@cache
def source_numbers(path: Path) -> list[float]:
    """Every number written in ``path``, sorted (JSON, CSV and markdown alike are read as text)."""
    return sorted(float(m.group()) for m in SOURCE_NUMBER.finditer(path.read_text(encoding="utf-8")))


def found(figure: Figure, numbers: list[float]) -> bool:
    """Whether a number of ``numbers`` prints as ``figure`` at the figure's precision."""
    half = 0.5 * 10**-figure.decimals + 1e-12
    i = bisect.bisect_left(numbers, figure.value - half)
    return i < len(numbers) and numbers[i] <= figure.value + half


# ---------------------------------------------------------------------------------------------------
# Generated blocks


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _demo_records(root: Path) -> list[tuple[Path, dict]]:
    """Each ``docs/figures/cpu_demo*/run.json``: one measurement of the CPU demo on one machine kind."""
    records = [
        (p.parent, json.loads(p.read_text())) for p in sorted(root.glob("docs/figures/cpu_demo*/run.json"))
    ]
    return sorted(records, key=lambda item: (item[1].get("version", ""), item[1]["date"]), reverse=True)


TIPS = ("thumb_tip", "index_tip", "middle_tip", "ring_tip", "pinky_tip")


def cpu_demo_table(root: Path) -> list[str]:
    """The CPU demo per machine kind: validation and test figures, fingertips, run time."""
    lines = [
        "| version, commit, date | machine | test crops | test PCK@0.2 [95 % over crops] | test NME "
        "| test PCK@0.05 | thumb / index / middle / ring / pinky tip PCK@0.2 (test) "
        "| validation NME (best epoch) | `kedro run` |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for folder, run in _demo_records(root):
        test = json.loads((folder / "test_metrics.json").read_text())
        tips = {row["name"]: float(row["pck_0.2"]) for row in _read_csv(folder / "test_per_keypoint.csv")}
        machine = run["machine"]
        where = folder.relative_to(root).as_posix()
        lines.append(
            f"| {run['version']} ({run['commit']}, {run['date']}; [result files]({where}/run.json)) "
            f"| {machine['cpu']}, {machine['cpu_capability']} | {test['n_crops']:.0f} "
            f"| {test['pck_0.2']:.3f}{_crop_interval(test, 'pck_0.2')} | {test['nme']:.3f} "
            f"| {test['pck_0.05']:.3f} "
            f"| {' / '.join(f'{tips[t]:.2f}' for t in TIPS)} "
            f"| {run['best_val_nme']:.3f} (epoch {run['best_epoch']}) | {_seconds(run.get('kedro_run_s'))} |"
        )
    return lines


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} s"


def _crop_interval(metrics: dict, name: str) -> str:
    """`` [low, high]`` of a metric's interval over test crops (results written before it had none)."""
    if f"{name}_ci_low" not in metrics:
        return ""
    return f" [{metrics[f'{name}_ci_low']:.3f}, {metrics[f'{name}_ci_high']:.3f}]"


GRID_ROWS = (("pck_0.2", "PCK@0.2", True), ("nme", "NME", False), ("pck_0.05", "PCK@0.05", True))


def grid_040_test1000(root: Path) -> list[str]:
    """0.4.0's clean cells on the 1000-image test split: each mean with its interval over seeds and over
    seeds and test crops."""
    summary = root / "docs/figures/compare_rhd_cpu_0.4.0_test1000/summary.csv"
    rows = [r for r in _read_csv(summary) if r["noise"] == "clean" and r["init"] == "scratch"]
    crops = int(float(json.loads((summary.parent / "record.json").read_text())["split"].split()[1]))
    lines = [
        f"| test ({crops} crops), clean labels, 3 seeds | {' | '.join(r['method'] for r in rows)} |",
        "|---|" + "---|" * len(rows),
    ]
    for metric, label, _ in GRID_ROWS:
        cells = [
            f"{float(r[f'test_{metric}_mean']):.3f} [{float(r[f'test_{metric}_crops_ci_low']):.3f}, "
            f"{float(r[f'test_{metric}_crops_ci_high']):.3f}]"
            for r in rows
        ]
        lines.append(f"| {label} [95 % over seeds and test crops] | {' | '.join(cells)} |")
    return lines


def parameter_table(block: type) -> list[str]:
    """A parameter block's keys, defaults and help, from its typed model (the one place they live)."""
    execution = set(execution_only_keys(block))
    lines = ["| key | default | what it sets | changes what is computed |", "|---|---|---|---|"]
    for name, field in schema_fields(block).items():
        if field.is_required():
            default = "required"
        else:
            value = field.get_default(call_default_factory=True)
            value = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
            default = f"`{json.dumps(value)}`"
        # <run_id> is not an HTML tag; a | inside a cell would end it
        help_text = (field.description or "").replace("<", "\\<").replace("|", "\\|")
        lines.append(f"| `{name}` | {default} | {help_text} | {'no' if name in execution else 'yes'} |")
    return lines


RENDERERS: dict[str, Callable[[Path], list[str]]] = {
    "cpu_demo": cpu_demo_table,
    "grid_0.4.0_test1000": grid_040_test1000,
    "parameters_evaluate": lambda root: parameter_table(EvaluateParams),
    "parameters_predict": lambda root: parameter_table(PredictParams),
    "parameters_compare": lambda root: parameter_table(CompareParams),
    "parameters_model": lambda root: parameter_table(ModelSpec),
    "parameters_train": lambda root: parameter_table(TrainConfig),
}


# ---------------------------------------------------------------------------------------------------
# Checking and rewriting


def _blocks(lines: list[str], path: Path) -> Iterator[tuple[int, int, str]]:
    """(first line, end-mark line, name) of each generated block (0-based indices)."""
    start = None
    for i, line in enumerate(lines):
        if match := GENERATED_START.match(line):
            if start is not None:
                raise ValueError(
                    f"{path}:{i + 1}: generated block inside the one opened at line {start[0] + 1}"
                )
            start = (i, match.group(1))
        elif GENERATED_END.match(line):
            if start is None:
                raise ValueError(f"{path}:{i + 1}: 'end generated' without a 'generated:' mark")
            yield start[0], i, start[1]
            start = None
    if start is not None:
        raise ValueError(f"{path}:{start[0] + 1}: generated block {start[1]!r} is never closed")


def render(path: Path, root: Path = ROOT) -> str:
    """``path``'s text with every generated block rewritten by its renderer."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out, last = [], 0
    for first, end, name in _blocks(lines, path):
        if name not in RENDERERS:
            raise ValueError(
                f"{path}:{first + 1}: no renderer named {name!r} (known: {', '.join(RENDERERS)})"
            )
        out += lines[last : first + 1] + RENDERERS[name](root)
        last = end
    out += lines[last:]
    return "\n".join(out) + "\n"


def table_problems(path: Path, root: Path = ROOT) -> list[str]:
    """Every table figure of ``path`` without a source, or not found in the sources it names."""
    problems: list[str] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    generated = {i for first, end, _ in _blocks(lines, path) for i in range(first, end + 1)}
    sources: list[Path] | None = None
    in_fence = in_table = False
    where = path.relative_to(root).as_posix()
    for number, line in enumerate(lines, start=1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence or number - 1 in generated:
            continue
        if match := FIGURES_MARK.match(line):
            sources = [root / name for name in match.group(1).split()]
            if missing := [s.relative_to(root).as_posix() for s in sources if not s.is_file()]:
                problems.append(
                    f"{where}:{number}: the figures mark names files that do not exist: {missing}"
                )
                sources = []
            continue
        if not line.lstrip().startswith("|"):
            if in_table:  # a mark names the sources of the next table only
                sources, in_table = None, False
            continue
        in_table = True
        figures = table_figures(line)
        if not figures:
            continue
        if sources is None:
            problems.append(
                f"{where}:{number}: a table with figures ({figures[0].text}, ...) and no "
                "'<!-- figures: result files -->' mark above it"
            )
            sources = []  # one problem per table
            continue
        numbers = sorted(n for s in sources for n in source_numbers(s))
        if sources and (lost := [f.text for f in figures if not found(f, numbers)]):
            problems.append(
                f"{where}:{number}: {', '.join(lost)} not in "
                f"{', '.join(s.relative_to(root).as_posix() for s in sources)}"
            )
    return problems


def check(root: Path = ROOT) -> list[str]:
    """Every problem of the documentation's figures: stale generated blocks and unsourced tables."""
    problems = []
    for path in documents(root):
        try:
            if render(path, root) != path.read_text(encoding="utf-8"):
                problems.append(
                    f"{path.relative_to(root).as_posix()}: a generated block differs from its result "
                    "files: run python scripts/doc_figures.py"
                )
            problems += table_problems(path, root)
        except (ValueError, OSError, KeyError) as error:
            problems.append(f"{path.relative_to(root).as_posix()}: {error!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="list problems and exit 1 if any; write nothing")
    parser.add_argument("paths", nargs="*", type=Path, help="documents to handle (default: all)")
    args = parser.parse_args(argv)
    if not args.check:
        for path in [p.resolve() for p in args.paths] or documents():
            text = render(path)
            if text != path.read_text(encoding="utf-8"):
                path.write_text(text, encoding="utf-8")
                print(f"rewrote {path.relative_to(ROOT)}")
    problems = [p for p in check() if not args.paths or any(p.startswith(str(q)) for q in args.paths)]
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
