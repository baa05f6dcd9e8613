"""Every method trains and is evaluated through the train template (tiny, 1 epoch, in memory)."""

import numpy as np
import pandas as pd
import pytest
from helpers import TINY_MODEL_PARAMS, TINY_TRAIN_PARAMS
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import CSVDataset, ParquetDataset
from matplotlib.figure import Figure

from mle_hand_pipeline.datasets.records import stack_column
from mle_hand_pipeline.methods import METHODS
from mle_hand_pipeline.pipelines.train.pipeline import create_pipeline

MODEL = TINY_MODEL_PARAMS
TRAIN = TINY_TRAIN_PARAMS
TABLES = ("per_keypoint", "per_stage", "pck_curve", "calibration")
FIGURES = ("pck_curve", "per_keypoint_nme", "per_stage_pck", "calibration", "qualitative")


def _catalog(tiny_rhd, tmp_path, method):
    catalog = DataCatalog()
    catalog["rhd.hands"] = tiny_rhd["hands"]
    catalog["rhd.crops"] = tiny_rhd["crops"]
    catalog["rhd.checkpoints"] = tmp_path / "checkpoints"
    catalog["rhd.preprocess_summary"] = {"kept_total": len(tiny_rhd["hands"])}
    catalog["params:rhd.model"] = {**MODEL, "method": method}
    catalog["params:rhd.train"] = TRAIN
    catalog["params:rhd.evaluate"] = {
        "checkpoint": "best",
        "batch_size": 16,
        "model": None,
        "keep_checkpoints": "all",
    }
    catalog["params:rhd.tracking"] = {"run_name": None, "tags": {}}
    # files between nodes, as in the project catalog: parquet and CSV round trips
    catalog["rhd.test_predictions"] = ParquetDataset(filepath=str(tmp_path / "predictions.parquet"))
    for name in TABLES:
        catalog[f"rhd.test_{name}"] = CSVDataset(filepath=str(tmp_path / f"{name}.csv"))
    catalog["rhd.training_report"] = JSONDataset(filepath=str(tmp_path / "training_report.json"))
    catalog["rhd.test_metrics"] = JSONDataset(filepath=str(tmp_path / "test_metrics.json"))
    for name in (f"test_{f}_plot" for f in FIGURES):
        catalog[f"rhd.{name}"] = MemoryDataset()
    return catalog


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_and_evaluates_through_train_rhd(method, tiny_rhd, tmp_path):
    catalog = _catalog(tiny_rhd, tmp_path, method)
    SequentialRunner().run(create_pipeline("rhd"), catalog)

    test = tiny_rhd["hands"].query("split == 'test'")
    stages = 1 if method == "rle" else 2
    metrics = catalog.load("rhd.test_metrics")
    for key in ("nme", "pck_0.05", "pck_0.1", "pck_0.15", "pck_0.2", "auc_0.2", "epe_px", "mmpose_auc"):
        assert np.isfinite(metrics[key]), key
    assert 0 <= metrics["pck_0.2"] <= 1 and metrics["nme"] > 0
    assert metrics["n_crops"] == len(test)
    assert f"stage{stages}_pck_0.2" in metrics and f"stage{stages + 1}_pck_0.2" not in metrics
    has_sigma = method in ("mle", "rle")
    assert ("within_1sigma" in metrics) == has_sigma

    predictions = pd.read_parquet(tmp_path / "predictions.parquet")
    assert len(predictions) == len(test) and (predictions["method"] == method).all()
    assert stack_column(predictions["pred_crop"]).shape == (len(test), stages, 21, 2)
    assert stack_column(predictions["pred_source"]).shape == (len(test), stages, 21, 2)
    per_stage = pd.read_csv(tmp_path / "per_stage.csv")
    assert per_stage["stage"].tolist() == list(range(1, stages + 1))
    assert per_stage["pck_0.2"].iloc[-1] == pytest.approx(metrics["pck_0.2"])
    per_keypoint = pd.read_csv(tmp_path / "per_keypoint.csv")
    assert len(per_keypoint) == 21 and per_keypoint["paper_view"].sum() == 11
    calibration = pd.read_csv(tmp_path / "calibration.csv")
    assert calibration.empty != has_sigma
    for name in FIGURES:
        assert isinstance(catalog.load(f"rhd.test_{name}_plot"), Figure)
    report = catalog.load("rhd.training_report")
    assert report["method"] == method and report["label_noise"]["n_jittered"] == 0
