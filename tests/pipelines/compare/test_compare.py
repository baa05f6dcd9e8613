"""compare_rhd: the plan changes only the method (and noise), each run is a nested MLflow run with the
train runs' metric names, the parent gets the table and figures; a diverging method is reported."""

import math

import mlflow
import numpy as np
import pytest
from helpers import TINY_MODEL_PARAMS, TINY_TRAIN_PARAMS
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import CSVDataset
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from mle_hand_pipeline.pipelines.compare import nodes
from mle_hand_pipeline.pipelines.compare.pipeline import FIGURES, TABLES, create_pipeline
from mle_hand_pipeline.training.engine import NonFiniteLossError

MODEL = {**TINY_MODEL_PARAMS, "method": "mle"}
TRAIN = TINY_TRAIN_PARAMS
EVALUATE = {"checkpoint": "best", "batch_size": 16, "model": None}
COMPARE = {
    "methods": ["mle", "cpm"],
    "loss_overrides": {"rle": {"residual": "laplace"}},
    "noise_levels": [{"name": "clean"}, {"outlier_fraction": 0.2}],
}


def test_plan_changes_only_the_method_and_the_noise():
    plan = nodes.comparison_plan(MODEL, TRAIN, {**COMPARE, "methods": ["mle", "rle", "cpm"]})
    assert [(p["method"], p["noise"]) for p in plan] == [
        ("mle", "clean"),
        ("rle", "clean"),
        ("cpm", "clean"),
        ("mle", "j0f0o0.2"),
        ("rle", "j0f0o0.2"),
        ("cpm", "j0f0o0.2"),
    ]
    for p in plan:
        model = {k: v for k, v in p["model"].items() if k not in ("method", "loss")}
        assert model == {k: v for k, v in MODEL.items() if k not in ("method", "loss")}
        assert {k: v for k, v in p["train"].items() if k != "label_noise"} == {
            k: v for k, v in TRAIN.items() if k != "label_noise"
        }
    assert plan[0]["model"]["loss"]["residual"] == "none"  # the paper's MLE loss
    assert plan[1]["model"]["loss"] == {"residual": "laplace", "flow_init": "identity"}  # RLE's own
    assert plan[3]["train"]["label_noise"] == {
        "fraction": 0.0,
        "jitter_px": 0.0,
        "outlier_fraction": 0.2,
        "seed": 0,
    }
    assert plan[0]["train"]["label_noise"]["outlier_fraction"] == 0.0
    assert MODEL["method"] == "mle" and TRAIN["label_noise"]["outlier_fraction"] == 0.0  # inputs untouched
    with pytest.raises(ValueError, match="unknown"):
        nodes.comparison_plan(MODEL, TRAIN, {"methods": ["mle", "hourglass"]})
    with pytest.raises(ValueError, match="named"):
        nodes.comparison_plan(MODEL, TRAIN, {"noise_levels": [{}, {"fraction": 0.5}]})  # both "clean"
    with pytest.raises(ValueError, match="fraction"):
        nodes.comparison_plan(MODEL, TRAIN, {"noise_levels": [{"fraction": 2.0, "jitter_px": 1.0}]})
    # from the command line (`--params` splits on commas): "mle+integral"
    assert [p["method"] for p in nodes.comparison_plan(MODEL, TRAIN, {"methods": "mle+integral"})] == [
        "mle",
        "integral",
    ]
    # default: every method, clean labels
    assert [p["method"] for p in nodes.comparison_plan(MODEL, TRAIN, {})] == list(nodes.METHODS)


def _catalog(tiny_rhd, tmp_path, compare):
    catalog = DataCatalog()
    catalog["rhd.hands"] = tiny_rhd["hands"]
    catalog["rhd.crops"] = tiny_rhd["crops"]
    catalog["rhd.checkpoints"] = tmp_path / "checkpoints"
    catalog["params:rhd.model"] = MODEL
    catalog["params:rhd.train"] = TRAIN
    catalog["params:rhd.evaluate"] = EVALUATE
    catalog["params:rhd.compare"] = compare
    for name in TABLES:  # CSV between the nodes, as in the project catalog
        catalog[f"rhd.{name}"] = CSVDataset(filepath=str(tmp_path / f"{name}.csv"))
    for name in FIGURES:
        catalog[f"rhd.comparison_{name}_plot"] = MemoryDataset(copy_mode="assign")
    return catalog


def test_each_method_and_noise_level_is_a_nested_mlflow_run(tiny_rhd, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("compare", artifact_location=(tmp_path / "mlruns").as_uri())
        catalog = _catalog(tiny_rhd, tmp_path, COMPARE)
        with mlflow.start_run(experiment_id=experiment, run_name="compare_rhd") as parent:
            SequentialRunner().run(create_pipeline("rhd"), catalog)
    finally:
        mlflow.set_tracking_uri(None)

    table = catalog.load("rhd.comparison_table")
    assert table["run"].tolist() == [
        "rhd-mle-noise-clean",
        "rhd-cpm-noise-clean",
        "rhd-mle-noise-j0f0o0.2",
        "rhd-cpm-noise-j0f0o0.2",
    ]
    assert (table["status"] == "finished").all() and table["epochs"].eq(1).all()
    assert table.loc[2, "label_nme"] > 0.05 and table.loc[0, "label_nme"] == 0
    for row in table.itertuples():
        # one run folder (named after the method's nested MLflow run) per cell
        cell = tmp_path / "checkpoints" / "compare" / row.noise / row.method
        assert len(list(cell.glob("*/best.pt"))) == 1

    client = MlflowClient(uri)
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.info.run_name for r in children) == sorted(table["run"])
    for run in children:
        row = table.set_index("mlflow_run_id").loc[run.info.run_id]
        assert run.info.status == "FINISHED"
        params, metrics = run.data.params, run.data.metrics
        assert params["method"] == params["rhd.model.method"] == row["method"]
        assert params["rhd.model.backbone"] == "resnet18" and params["rhd.train.epochs"] == "1"
        assert float(params["rhd.train.label_noise.outlier_fraction"]) == row["outlier_fraction"]
        # the same metric names as a train_rhd run
        assert metrics["test_nme"] == pytest.approx(row["nme"]) and math.isfinite(metrics["test_pck_0.2"])
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_nme")] == [1]
        for key in (
            "train_loss",
            "train_wall_time_s",
            "best_epoch",
            "test_stage2_pck_0.2",
            "label_noise_n_outliers",
        ):
            assert key in metrics, key
        assert (metrics["label_noise_n_outliers"] > 0) == (row["noise"] != "clean")
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
        assert {
            "evaluation/pck_curve.png",
            "evaluation/qualitative.png",
            "evaluation/per_keypoint.csv",
        } <= artifacts
    assert "test_nme" not in client.get_run(parent.info.run_id).data.metrics  # children hold the metrics

    curves = catalog.load("rhd.comparison_pck_curves")
    assert curves.groupby("run").size().tolist() == [41] * 4
    per_stage = catalog.load("rhd.comparison_per_stage")
    assert per_stage.query("run == 'rhd-mle-noise-clean'")["stage"].tolist() == [1, 2]
    per_keypoint = catalog.load("rhd.comparison_per_keypoint")
    nme = per_keypoint.query("run == 'rhd-mle-noise-clean'")["nme"].to_numpy()
    assert len(nme) == 21 and np.isfinite(nme).all()
    pck = catalog.load("rhd.comparison_pck_curves_plot")
    assert isinstance(pck, Figure) and len(pck.axes[0].lines) == 2  # both methods, clean labels
    robustness = catalog.load("rhd.comparison_noise_robustness_plot")
    assert [len(ax.lines) for ax in robustness.axes] == [2, 2]


def test_a_diverging_method_is_reported_and_the_comparison_goes_on(tiny_rhd, tmp_path, monkeypatch):
    real = nodes.train_method

    def diverge_on_heatmap(hands, crops_dir, root, model, train, **callbacks):
        if model["method"] == "heatmap_l2":
            raise NonFiniteLossError("20 training steps in a row had a non-finite loss")
        return real(hands, crops_dir, root, model, train, **callbacks)

    monkeypatch.setattr(nodes, "train_method", diverge_on_heatmap)
    table, curves, per_keypoint, per_stage = nodes.compare_methods(
        tiny_rhd["hands"],
        tiny_rhd["crops"],
        tmp_path,
        MODEL,
        TRAIN,
        EVALUATE,
        {"methods": ["heatmap_l2", "rle"]},
    )
    assert table["status"].tolist() == ["diverged", "finished"]
    assert math.isnan(table.loc[0, "nme"]) and table.loc[1, "nme"] > 0
    assert set(curves["method"]) == {"rle"}
    figures = nodes.plot_comparison(table, curves, per_keypoint, per_stage, {"reference_method": "rle"})
    assert [t.get_text().split(" ")[0] for t in figures[0].axes[0].get_legend().get_texts()] == ["rle"]
