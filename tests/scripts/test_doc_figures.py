"""scripts/doc_figures.py: every figure table of the documentation agrees with its result files."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "scripts" / "doc_figures.py"


@pytest.fixture(scope="module")
def doc_figures():
    spec = importlib.util.spec_from_file_location("doc_figures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["doc_figures"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["doc_figures"]


def test_every_documented_figure_table_agrees_with_its_result_files(doc_figures):
    problems = doc_figures.check(ROOT)
    assert not problems, "\n".join(problems)


def test_table_figures_leave_out_versions_metric_names_link_targets_and_code(doc_figures):
    row = (
        "| 0.4.0 ([files](docs/figures/compare_rhd_cpu_0.4.0/x.json)) | PCK@0.2 "
        "| **0.740** [0.724, 0.756] | +0.015 | \u22120.009 | 12 | `lr: 0.001` |"
    )
    assert [(f.value, f.decimals) for f in doc_figures.table_figures(row)] == [
        (0.740, 3),
        (0.724, 3),
        (0.756, 3),
        (0.015, 3),
        (-0.009, 3),
    ]


def test_a_figure_matches_a_number_only_at_its_printed_precision(doc_figures):
    numbers = sorted([0.73968, -0.0094, 614.4])
    figure = doc_figures.table_figures
    assert doc_figures.found(figure("| 0.740 |")[0], numbers)
    assert doc_figures.found(figure("| 0.74 |")[0], numbers)
    assert not doc_figures.found(figure("| 0.741 |")[0], numbers)
    assert doc_figures.found(figure("| -0.009 |")[0], numbers)
    assert not doc_figures.found(figure("| 0.009 |")[0], numbers)  # the sign is kept
    assert doc_figures.found(figure("| 614.4 s |")[0], numbers)


@pytest.fixture
def project(tmp_path):
    """A project with the demo's result folder and a README holding one generated and one marked table."""
    shutil.copytree(ROOT / "docs/figures/cpu_demo", tmp_path / "docs/figures/cpu_demo")
    (tmp_path / "results.json").write_text(json.dumps({"pck": 0.73968, "nme": 0.1234}))
    (tmp_path / "README.md").write_text(
        "# Project\n\n<!-- generated: cpu_demo -->\n<!-- end generated -->\n\n"
        "<!-- figures: results.json -->\n\n"
        "| metric | value |\n|---|---|\n| PCK@0.2 | 0.740 |\n| NME | 0.123 |\n"
    )
    return tmp_path


def test_a_generated_block_is_written_from_the_result_folders_and_kept_current(doc_figures, project):
    readme = project / "README.md"
    assert any("generated block differs" in p for p in doc_figures.check(project))
    readme.write_text(doc_figures.render(readme, project))
    assert "| 0.4.0 (" in readme.read_text()
    assert doc_figures.check(project) == []

    run = project / "docs/figures/cpu_demo/run.json"
    record = json.loads(run.read_text())
    run.write_text(json.dumps({**record, "kedro_run_s": record["kedro_run_s"] + 100}))
    assert any("generated block differs" in p for p in doc_figures.check(project))


def test_figures_missing_from_the_named_files_are_named_with_their_line(doc_figures, project):
    readme = project / "README.md"
    readme.write_text(doc_figures.render(readme, project).replace("| 0.123 |", "| 0.124 |"))
    assert doc_figures.check(project) == ["README.md:14: 0.124 not in results.json"]


def test_a_table_without_a_mark_or_with_a_missing_file_is_refused(doc_figures, project):
    readme = project / "README.md"
    text = doc_figures.render(readme, project)
    readme.write_text(text.replace("<!-- figures: results.json -->\n", ""))
    assert doc_figures.check(project) == [
        "README.md:12: a table with figures (0.740, ...) and no "
        "'<!-- figures: result files -->' mark above it"
    ]
    readme.write_text(text.replace("results.json -->", "gone.json -->"))
    assert doc_figures.check(project) == [
        "README.md:9: the figures mark names files that do not exist: ['gone.json']"
    ]


def test_a_mark_covers_only_the_next_table(doc_figures, project):
    readme = project / "README.md"
    text = doc_figures.render(readme, project) + "\nText.\n\n| other | 0.5 |\n|---|---|\n"
    readme.write_text(text)
    assert doc_figures.check(project) == [
        "README.md:18: a table with figures (0.5, ...) and no '<!-- figures: result files -->' mark above it"
    ]
