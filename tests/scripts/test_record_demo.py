"""scripts/record_demo.py: a finished demo run becomes a result folder the README's table reads."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DEMO = ROOT / "docs/figures/cpu_demo"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def project(tmp_path):
    """A project folder as the demo's `kedro run` leaves it (its files taken from the 0.4.0 record)."""
    project = tmp_path / "project"
    reporting, output = project / "data/08_reporting/rhd", project / "data/07_model_output/rhd"
    reporting.mkdir(parents=True), output.mkdir(parents=True)
    for name in ("test_metrics.json", "test_per_keypoint.csv", "test_pck_curve.png", "test_qualitative.png"):
        shutil.copy(DEMO / name, reporting / name)
    shutil.copy(DEMO / "training_curves.png", reporting)
    shutil.copy(DEMO / "train_history.csv", output)
    (output / "training_report.json").write_text(json.dumps({"best_epoch": 8, "train_wall_time_s": 614.4}))
    shutil.copy(ROOT / "pyproject.toml", project)
    return project


def test_a_demo_run_is_recorded_and_fills_a_row_of_the_readme_table(project, tmp_path):
    record_demo, doc_figures = _module("record_demo"), _module("doc_figures")
    out = tmp_path / "docs/figures/cpu_demo_new"
    assert record_demo.main([str(out), "--project", str(project), "--kedro-run-s", "800"]) == 0
    run = json.loads((out / "run.json").read_text())
    history = (DEMO / "train_history.csv").read_text().splitlines()
    epoch8 = dict(zip(history[0].split(","), history[8].split(","), strict=True))
    assert run["best_epoch"] == 8 and run["best_val_nme"] == pytest.approx(float(epoch8["val_nme"]))
    assert run["best_val_pck_0.2"] == pytest.approx(float(epoch8["val_pck_0.2"]))
    assert run["kedro_run_s"] == 800 and run["machine"]["cpu_capability"] and run["version"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*run["files"], "run.json"])
    (row,) = doc_figures.cpu_demo_table(tmp_path)[2:]
    assert f"| {run['version']} (" in row and "| 800 s |" in row and "| 0.737 | 0.166 |" in row


def test_a_run_that_did_not_finish_is_refused_naming_what_is_missing(project, tmp_path, capsys):
    record_demo = _module("record_demo")
    (project / "data/08_reporting/rhd/test_metrics.json").unlink()
    assert record_demo.main([str(tmp_path / "out"), "--project", str(project)]) == 1
    assert "test_metrics.json" in capsys.readouterr().err and not (tmp_path / "out").exists()
