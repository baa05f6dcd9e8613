"""evaluate_rhd: a checkpoint path gives every stage; an MLflow model URI gives the same final stage."""

import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import CSVDataset, ParquetDataset

from mle_hand_pipeline.datasets.records import stack_column
from mle_hand_pipeline.evaluation.report import FINAL_STAGE_ONLY
from mle_hand_pipeline.export import log_mlflow_model
from mle_hand_pipeline.pipelines.evaluate.nodes import evaluate_model
from mle_hand_pipeline.pipelines.evaluate.pipeline import create_pipeline
from mle_hand_pipeline.training.checkpoint import ModelSpec, load_model
from mle_hand_pipeline.training.engine import TrainConfig, fit
from mle_hand_pipeline.training.runs import evaluate_on_test, split

SPEC = ModelSpec(method="mle", backbone="resnet18", stages=2, input_size=64, head_channels=16)
CONFIG = TrainConfig(
    epochs=1, batch_size=8, lr_milestones=(1,), devices="cpu", num_workers=0, eval_batch_size=16
)


@pytest.fixture(scope="module")
def checkpoint(tiny_rhd, tmp_path_factory):
    hands = tiny_rhd["hands"]
    result = fit(
        SPEC,
        CONFIG,
        split(hands, "train"),
        split(hands, "val"),
        tiny_rhd["crops"],
        tmp_path_factory.mktemp("ck"),
    )
    return result.best_checkpoint


@pytest.mark.slow
def test_evaluate_pipeline_on_a_checkpoint_matches_the_train_evaluation(tiny_rhd, checkpoint, tmp_path):
    params = {"checkpoint": "best", "batch_size": 16, "model": str(checkpoint)}
    catalog = DataCatalog()
    catalog["rhd.hands"] = tiny_rhd["hands"]
    catalog["rhd.crops"] = tiny_rhd["crops"]
    catalog["params:rhd.evaluate"] = params
    catalog["params:rhd.tracking"] = {"tags": {"purpose": "test"}}  # no MLflow run here: nothing to tag
    catalog["rhd.evaluation_predictions"] = ParquetDataset(filepath=str(tmp_path / "p.parquet"))
    for name in ("per_keypoint", "per_stage", "pck_curve", "calibration", "per_crop"):
        catalog[f"rhd.evaluation_{name}"] = CSVDataset(filepath=str(tmp_path / f"{name}.csv"))
    for name in ("metrics", "pck_curve_plot", "per_keypoint_nme_plot", "per_stage_pck_plot"):
        catalog[f"rhd.evaluation_{name}"] = MemoryDataset()
    catalog["rhd.evaluation_calibration_plot"] = MemoryDataset()
    catalog["rhd.evaluation_qualitative_plot"] = MemoryDataset()
    SequentialRunner().run(create_pipeline("rhd"), catalog)

    metrics = catalog.load("rhd.evaluation_metrics")
    assert metrics.pop("run") == {"mlflow_run_id": None, "model": str(checkpoint)}  # no MLflow run here
    reference = evaluate_on_test(tiny_rhd["hands"], tiny_rhd["crops"], checkpoint, 16).metrics
    assert metrics == pytest.approx(reference)
    assert "stage1_pck_0.2" in metrics and "within_1sigma" in metrics
    assert (tmp_path / "p.parquet").is_file() and (tmp_path / "per_stage.csv").read_text().count("\n") == 3
    per_crop = pd.read_csv(tmp_path / "per_crop.csv")
    assert len(per_crop) == len(split(tiny_rhd["hands"], "test"))
    assert per_crop["pck_0.2_hits"].sum() / per_crop["n_normalised"].sum() == pytest.approx(
        metrics["pck_0.2"]
    )


@pytest.mark.slow
def test_an_mlflow_model_gives_the_final_stage_of_its_checkpoint(tiny_rhd, checkpoint, tmp_path):
    hands, crops = tiny_rhd["hands"], tiny_rhd["crops"]
    n_test = len(split(hands, "test"))
    batch_size = n_test - 1  # the last batch holds ONE crop: torch.export's batch axis starts at 2
    assert batch_size >= 2
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        experiment = mlflow.create_experiment("e", artifact_location=(tmp_path / "mlruns").as_uri())
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.log_param("rhd.model.method", "mle")
            model, spec = load_model(checkpoint)
            log_mlflow_model(model, spec.input_size)
        uri = f"runs:/{run.info.run_id}/model"
        params = {"checkpoint": "best", "batch_size": batch_size, "model": uri}
        metrics, predictions, _, per_stage, _, calibration, _ = evaluate_model(hands, crops, params)
    finally:
        mlflow.set_tracking_uri(None)
    reference = evaluate_on_test(hands, crops, checkpoint, batch_size).predictions
    coords = stack_column(predictions["pred_crop"])
    assert coords.shape == (n_test, 1, 21, 2)
    np.testing.assert_allclose(coords[:, 0], stack_column(reference["pred_crop"])[:, -1], atol=1e-3)
    np.testing.assert_allclose(
        stack_column(predictions["sigma_crop"])[:, 0], stack_column(reference["sigma_crop"])[:, -1], rtol=1e-3
    )
    assert (predictions["method"] == "mle").all()  # read from the run's parameters
    assert per_stage["stage"].tolist() == [FINAL_STAGE_ONLY]
    assert not any(k.startswith("stage") for k in metrics) and not calibration.empty


def test_no_model_is_a_clear_error(tiny_rhd):
    with pytest.raises(ValueError, match=r"rhd.evaluate.model=runs:/<run_id>/model"):
        evaluate_model(
            tiny_rhd["hands"], tiny_rhd["crops"], {"checkpoint": "best", "batch_size": 8, "model": None}
        )


def test_an_onnx_file_is_refused_with_its_name(tiny_rhd, tmp_path):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"not read")
    with pytest.raises(ValueError, match=r"model.onnx is an ONNX file: evaluate a checkpoint"):
        evaluate_model(tiny_rhd["hands"], tiny_rhd["crops"], {"batch_size": 8, "model": str(onnx)})
