"""One resolver for every way of naming a model (predict and evaluate), and a logged MLflow model folder
used as ``mle-hand predict --model FOLDER``."""

from __future__ import annotations

import json
import shutil

import mlflow
import numpy as np
import pytest
from predict_helpers import RHD_IMAGES, SIZE, save_checkpoint, tiny_model

from mle_hand_pipeline import cli
from mle_hand_pipeline.export import PackedKeypoints, packed_signature
from mle_hand_pipeline.model_source import (
    CHECKPOINT,
    MLFLOW,
    ONNX,
    ModelNotFoundError,
    is_mlflow_uri,
    resolve_model_source,
)
from mle_hand_pipeline.predict import load_predictor, predict_images

RUN_ID = "0123456789abcdef0123456789abcdef"


def test_uri_or_path():
    assert is_mlflow_uri("runs:/0123abcd/model") and is_mlflow_uri("models:/hand/3")
    assert is_mlflow_uri("file:///tmp/model") and is_mlflow_uri("s3://bucket/model")
    assert not is_mlflow_uri("data/06_models/rhd/mle/best.pt") and not is_mlflow_uri("/abs/best.pt")
    assert not is_mlflow_uri("C:/models/best.pt")  # a one-letter scheme is a Windows drive


def test_resolver_kinds(tmp_path):
    (tmp_path / "best.pt").write_bytes(b"")
    (tmp_path / "model.onnx").write_bytes(b"")
    (tmp_path / "folder").mkdir()
    (tmp_path / "mlflow_model").mkdir()
    (tmp_path / "mlflow_model" / "MLmodel").write_text("flavors: {}\n")

    assert resolve_model_source(tmp_path / "best.pt").kind == CHECKPOINT
    assert resolve_model_source(tmp_path / "model.onnx").kind == ONNX
    folder = resolve_model_source(tmp_path / "mlflow_model")
    assert (folder.kind, folder.location) == (MLFLOW, str(tmp_path / "mlflow_model"))  # a path, not file://
    with pytest.raises(ModelNotFoundError, match="no MLmodel file"):
        resolve_model_source(tmp_path / "folder")
    for version in ("2026-11-29T10.00.00.000Z", "2026-11-30T09.00.00.000Z", "2026-11-30T08.59.59.999Z"):
        (tmp_path / "model.pt" / version).mkdir(parents=True)
        (tmp_path / "model.pt" / version / "model.pt").write_bytes(b"")
    newest = resolve_model_source(tmp_path / "model.pt")  # a Kedro versioned dataset: its newest version
    assert (newest.kind, newest.location) == (
        CHECKPOINT,
        str(tmp_path / "model.pt/2026-11-30T09.00.00.000Z/model.pt"),
    )
    for bare in (RUN_ID, f"runs:/{RUN_ID}", f"runs:/{RUN_ID}/"):
        source = resolve_model_source(bare)
        assert (source.kind, source.location, source.run_id) == (MLFLOW, f"runs:/{RUN_ID}/model", RUN_ID)
    assert resolve_model_source(f"runs:/{RUN_ID}/pyfunc_model").location == f"runs:/{RUN_ID}/pyfunc_model"
    assert resolve_model_source("models:/hand/3").run_id is None
    with pytest.raises(ModelNotFoundError, match="not found"):
        resolve_model_source("C:/models/best.pt")


def test_predict_takes_a_logged_mlflow_model_folder(tmp_path, monkeypatch, capsys):
    """Issue 11: a genuine logged model folder failed with "Could not find an MLmodel configuration file".

    The folder is copied out of its run store and the tracking URI points at an empty store, as for a
    downloaded model: everything must come from the folder itself.
    """
    store = tmp_path / "store"
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    try:
        experiment = mlflow.create_experiment("e", artifact_location=(store / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            mlflow.pytorch.log_model(  # as export.log_mlflow_model logs it, without the ONNX extras
                PackedKeypoints(tiny_model().eval()),
                name="model",
                signature=packed_signature(SIZE),
                input_example=np.zeros((2, 3, SIZE, SIZE), dtype=np.float32),
            )
    finally:
        mlflow.set_tracking_uri(None)
    [mlmodel] = store.rglob("MLmodel")
    folder = shutil.copytree(mlmodel.parent, tmp_path / "downloaded_model")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")

    code = cli.main(["predict", str(RHD_IMAGES[0]), "--model", str(folder), "--out", str(tmp_path / "out")])
    assert code == cli.EXIT_OK, capsys.readouterr().err
    document = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert (document["model"], document["input_size"]) == (str(folder), SIZE)
    reference, _ = predict_images(load_predictor(save_checkpoint(tmp_path / "best.pt")), [RHD_IMAGES[0]])
    np.testing.assert_allclose(document["predictions"][0]["keypoints"], reference[0].keypoints, atol=1e-3)


def test_a_web_address_is_refused_with_what_to_do_instead():
    """Issue 38: `--model http://...` said "not enough values to unpack"."""
    with pytest.raises(
        ModelNotFoundError, match=r"a web address is not a model source; .*MLFLOW_TRACKING_URI"
    ):
        resolve_model_source("http://127.0.0.1:5000/model")


def test_a_registry_alias_is_pinned_to_the_version_it_names_when_resolved(tmp_path, monkeypatch):
    """Issue 38 (and 37): a model given by alias did not record the version it resolved to."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    runs = [client.create_run(client.create_experiment("e") if i == 0 else "1").info.run_id for i in range(2)]
    client.create_registered_model("hand")
    for run_id in runs:
        client.create_model_version("hand", f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias("hand", "champion", "1")
    source = resolve_model_source("models:/hand@champion")
    client.set_registered_model_alias("hand", "champion", "2")  # moved after resolution: no effect
    assert (source.location, source.run_id) == ("models:/hand/1", runs[0])
    assert source.label == "models:/hand@champion (models:/hand/1)"
    assert resolve_model_source("models:/hand@champion").location == "models:/hand/2"
    assert resolve_model_source(f"runs:/{runs[0]}").label == f"runs:/{runs[0]}"
    with pytest.raises(ModelNotFoundError, match="models:/hand@nobody: cannot load it from MLflow"):
        resolve_model_source("models:/hand@nobody")
