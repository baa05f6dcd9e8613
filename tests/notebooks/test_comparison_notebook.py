"""compare_rhd through `kedro run` (kedro-mlflow parent run, nested method runs), then the comparison
notebook executed against that project with nbclient, so it cannot rot."""

from pathlib import Path

import nbformat
import pytest
from helpers import artifact_paths, kedro_run, preprocess_rhd, project_experiment
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[2] / "notebooks" / "comparison.ipynb"
TINY = """
rhd:
  model: {backbone: resnet18, stages: 2, input_size: 64, head_channels: 16}
  train: {epochs: 1, batch_size: 8, lr_milestones: [1], num_workers: 0, eval_batch_size: 16}
  compare:
    methods: [mle, cpm]
    noise_levels: [{name: clean}]
"""
RUNS = ["rhd-cpm-noise-clean", "rhd-mle-noise-clean"]


@pytest.mark.slow
def test_compare_rhd_then_the_notebook(kedro_project, tiny_rhd, monkeypatch):
    (kedro_project / "conf/local/parameters_tiny.yml").write_text(TINY)
    preprocess_rhd(kedro_project, tiny_rhd["root"])
    kedro_run(kedro_project, "--pipeline=compare_rhd")

    client, experiment_id = project_experiment(kedro_project)
    (parent,) = client.search_runs([experiment_id], "attributes.run_name = 'compare_rhd'")
    children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.info.run_name for r in children) == RUNS
    assert parent.data.params["rhd.compare.methods"] == "['mle', 'cpm']"
    artifacts = artifact_paths(client, parent.info.run_id)
    for name in ("comparison_table.csv", "pck_curves.csv", "pck_curves.png", "per_stage_pck.png"):
        assert f"comparison/{name}" in artifacts, artifacts
    report = kedro_project / "data/08_reporting/rhd/compare"
    assert (report / "noise_robustness.png").stat().st_size > 1000

    monkeypatch.setenv("MLE_HAND_PROJECT", str(kedro_project))
    monkeypatch.setenv("MLE_HAND_DATASET", "rhd")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(kedro_project)}}
    ).execute()  # raises CellExecutionError on any failing cell

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert f"comparison run {parent.info.run_id}: 2 method runs" in text
    assert all(run in text for run in RUNS)
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    # 1 PCK-curve plot (one per noise level), 3 comparison figures, 2 qualitative grids from MLflow
    assert len(images) == 1 + 3 + 2
