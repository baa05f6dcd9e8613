"""compare_report_rhd through `kedro run` on fake cell runs in the project's MLflow store (no data file
at all: the report reads MLflow alone), then the comparison notebook executed against that project
with nbclient, so it cannot rot."""

from pathlib import Path

import nbformat
import numpy as np
import pytest
from helpers import kedro_run, log_fake_cell_run
from mlflow.tracking import MlflowClient
from nbclient import NotebookClient
from PIL import Image

from mle_hand_pipeline.grid.cells import Cell
from mle_hand_pipeline.pipelines.compare.nodes import FIGURES

NOTEBOOK = Path(__file__).parents[2] / "notebooks" / "comparison.ipynb"
TINY = """
rhd:
  compare:
    methods: [mle, cpm]
    seeds: [0, 1]
    noise_levels: [{name: clean}]
"""


@pytest.mark.slow
def test_compare_report_from_mlflow_alone_then_the_notebook(kedro_project, tmp_path, monkeypatch):
    (kedro_project / "conf/local/parameters_tiny.yml").write_text(TINY)
    client = MlflowClient(f"sqlite:///{kedro_project / 'mlflow.db'}")
    experiment = client.create_experiment(
        "mle_hand_pipeline", artifact_location=(kedro_project / "mlruns").as_uri()
    )
    picture = tmp_path / "test_qualitative.png"  # as a train run logs it
    Image.fromarray(np.full((20, 40, 3), 200, np.uint8)).save(picture)
    for seed in (0, 1):
        for method, pck in (("mle", 0.3), ("cpm", 0.6)):
            cell = Cell(method, "clean", "scratch", seed, {}, "cfg")
            metrics = {
                "test_nme": 0.5 - pck / 2 + seed / 100,
                "test_pck_0.2": pck + seed / 100,
                "best_epoch": 1,
            }
            run_id = log_fake_cell_run(client, experiment, "compare_rhd", cell, metrics)
            client.log_artifact(run_id, str(picture), "evaluation")

    kedro_run(kedro_project, "--pipelines=compare_report_rhd")
    report = kedro_project / "data/08_reporting/rhd/compare"
    verdict = (report / "verdict.md").read_text()
    assert "4 of 4 planned cells" in verdict and "- cpm beats mle on test_pck_0.2" in verdict
    assert (report / "pck_vs_noise.png").stat().st_size > 1000
    (parent,) = client.search_runs([experiment], "attributes.run_name = 'compare_report_rhd'")
    assert "comparison/summary.csv" in {
        a.path for a in client.list_artifacts(parent.info.run_id, "comparison")
    }

    monkeypatch.setenv("MLE_HAND_PROJECT", str(kedro_project))
    monkeypatch.setenv("MLE_HAND_DATASET", "rhd")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(kedro_project)}}
    ).execute()  # raises CellExecutionError on any failing cell

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "comparison compare_rhd: 4 runs, 4 finished" in text
    assert "mle-clean-scratch-s1" in text
    markdown = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert markdown and "# Comparison `compare_rhd` (rhd)" in markdown[0]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == len(FIGURES) + 2  # the report's figures, 1 qualitative grid per method
