"""`kedro run --pipelines=predict` end to end on the real samples, in a temporary project copy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import kedro_run
from PIL import Image
from predict_helpers import FREIHAND_IMAGES, RHD_IMAGES, save_checkpoint

from mle_hand_pipeline.parameters import PredictParams
from mle_hand_pipeline.pipelines.predict import nodes


@pytest.mark.slow
def test_predict_pipeline_writes_results_and_fails_at_the_end_on_bad_images(kedro_project):
    # The default model: the newest version train_rhd published to the versioned rhd.model dataset.
    save_checkpoint(kedro_project / "data/06_models/rhd/model.pt/2026-11-30T00.00.00.000Z/model.pt")
    (kedro_project / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (kedro_project / "conf/local/parameters_predict.yml").write_text(
        "predict:\n"
        f"  images: ['{RHD_IMAGES[0].parent}/*.png', '{FREIHAND_IMAGES[0]}', broken.png]\n"
        "  box: null\n"
    )
    output = kedro_run(kedro_project, "--pipelines=predict", check=False)
    flat = " ".join(output.split())
    assert "PredictFailuresError: 1 of 5 image(s) failed" in flat and "broken.png: cannot read image" in flat

    out = kedro_project / "data/07_model_output/predict"
    results = json.loads((out / "predictions.json").read_text())
    version = "data/06_models/rhd/model.pt/2026-11-30T00.00.00.000Z/model.pt"  # the file actually used
    assert results["model"] == version and results["backend"] == "torch"
    assert [p["image"] for p in results["predictions"]] == [*map(str, RHD_IMAGES), str(FREIHAND_IMAGES[0])]
    assert results["failures"][0]["image"] == "broken.png"
    table = pd.read_csv(out / "keypoints.csv")
    assert len(table) == 4 * 21
    first = table[table["image"] == str(RHD_IMAGES[0])][["x", "y"]].to_numpy()
    np.testing.assert_allclose(first, results["predictions"][0]["keypoints"], atol=1e-4)
    overlays = sorted(p.name for p in (out / "overlays").iterdir())
    assert overlays == ["00000.png", "00000000.png", "00001.png", "00002.png"]
    assert Image.open(out / "overlays/00000000.png").size == (224, 224)


def test_predict_node_with_onnx_backend_and_a_box(tmp_path):
    save_checkpoint(tmp_path / "best.pt")
    model = str(tmp_path / "best.pt")
    params = PredictParams(images="unused", model=model, backend="onnx", box="30 30 190 200")
    results = nodes.predict_keypoints([str(FREIHAND_IMAGES[1])], params)
    assert results["backend"] == "onnx" and not results["failures"]
    assert results["predictions"][0]["crop"]["side"] == pytest.approx(1.5 * 170)
    table = nodes.tabulate_keypoints(results)
    assert list(table["name"][:2]) == ["wrist", "thumb_cmc"] and len(table) == 21
    overlays, names = nodes.draw_overlays(results)
    assert names == ["00000001"] and overlays["00000001"].size == (224, 224)
    nodes.check_failures(results, table, names, fail_on_error=True)  # nothing failed: no error


def test_predict_node_names_a_missing_model(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pt' not found"):
        nodes.predict_keypoints(
            [str(FREIHAND_IMAGES[0])], PredictParams(images="unused", model=str(tmp_path / "nowhere.pt"))
        )


def test_check_failures_lists_every_bad_image_unless_told_not_to():
    results = {"predictions": [{}], "failures": [{"image": "a.png", "error": "a.png: no such image file"}]}
    with pytest.raises(nodes.PredictFailuresError, match=r"1 of 2 image\(s\) failed.*\n  a\.png: no such"):
        nodes.check_failures(results, None, [], fail_on_error=True)
    nodes.check_failures(results, None, [], fail_on_error=False)
