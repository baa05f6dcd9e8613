"""`mle-hand predict` as users type it: every option through argparse to the call it sets, and the
documented exit codes (2: no image matches a glob, a checkpoint that cannot be read; 1: images failed)."""

from __future__ import annotations

import os

import pytest
from predict_helpers import FREIHAND_IMAGES, save_checkpoint

from mle_hand_pipeline import cli, predict
from mle_hand_pipeline.predict import DEFAULT_BOX_SCALE


@pytest.fixture
def calls(monkeypatch, tmp_path):
    """The library calls `mle-hand predict` makes, recorded, with no model loaded."""
    seen = {}

    def load_predictor(model, backend="torch", device="auto", precision="fp32"):
        seen["load"] = {"model": model, "backend": backend, "device": device, "precision": precision}
        return predict.Predictor(run=None, input_size=64, backend=backend, source=str(model))

    def predict_images(predictor, images, **kwargs):
        seen["predict"] = {"images": list(images), **kwargs}
        return [], []

    def write_outputs(predictions, failures, out_dir, predictor=None, replace=False):
        seen["out"] = out_dir
        return predict.WrittenOutputs(json=tmp_path / "p.json", csv=tmp_path / "k.csv", overlays=[])

    monkeypatch.setattr(predict, "load_predictor", load_predictor)
    monkeypatch.setattr(predict, "predict_images", predict_images)
    monkeypatch.setattr(predict, "write_outputs", write_outputs)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///before.db")  # restored after the test
    return seen


def test_every_predict_option_reaches_its_call(calls):
    image = str(FREIHAND_IMAGES[0])
    argv = ["predict", image, "--model", "m.pt", "--device", "cpu:0", "--precision", "bf16",
            "--batch-size", "3", "--mirror", "--box-scale", "1.25", "--box", "1,2,30,40",
            "--backend", "onnx", "--out", "here", "--tracking-uri", "sqlite:///other.db"]  # fmt: skip
    assert cli.main(argv) == cli.EXIT_OK
    assert calls["load"] == {"model": "m.pt", "backend": "onnx", "device": "cpu:0", "precision": "bf16"}
    assert calls["predict"] == {
        "images": [image],
        "box": (1.0, 2.0, 30.0, 40.0),
        "box_scale": 1.25,
        "mirrored": True,
        "batch_size": 3,
    }
    assert calls["out"] == "here"
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///other.db"


def test_the_defaults_of_predict(calls):
    image = str(FREIHAND_IMAGES[0])
    assert cli.main(["predict", image, "--model", "m.pt"]) == cli.EXIT_OK
    assert calls["load"] == {"model": "m.pt", "backend": "torch", "device": "auto", "precision": "fp32"}
    assert calls["predict"] == {
        "images": [image],
        "box": None,
        "box_scale": DEFAULT_BOX_SCALE,
        "mirrored": False,
        "batch_size": 16,
    }
    assert calls["out"] == "predictions"
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///before.db"  # no --tracking-uri: left alone


@pytest.mark.parametrize(
    ("option", "value"), [("--batch-size", "many"), ("--box-scale", "wide"), ("--precision", "fp16")]
)
def test_a_bad_option_value_is_an_argparse_error(option, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["predict", str(FREIHAND_IMAGES[0]), "--model", "m.pt", option, value])
    assert exit_info.value.code == cli.EXIT_USAGE
    assert f"argument {option}: invalid" in capsys.readouterr().err


def test_a_glob_matching_nothing_exits_2(tmp_path, capsys):
    code = cli.main(["predict", str(tmp_path / "*.jpg"), "--model", "m.pt"])
    assert code == cli.EXIT_USAGE
    assert capsys.readouterr().err == f"mle-hand predict: error: no image matches '{tmp_path / '*.jpg'}'\n"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("model") / "best.pt")


def test_every_image_failing_exits_1_and_writes_the_failures(checkpoint, tmp_path, capsys):
    bad = [tmp_path / "a.jpg", tmp_path / "b.png"]
    bad[0].write_bytes(b"\xff\xd8\xff\xe0 truncated")
    bad[1].write_bytes(b"")
    out = tmp_path / "out"
    code = cli.main(["predict", *map(str, bad), "--model", str(checkpoint), "--out", str(out)])
    assert code == cli.EXIT_SOME_FAILED
    err = capsys.readouterr().err
    assert "2 of 2 image(s) failed" in err and all(f"FAILED {path}" in err for path in bad)
    assert (out / "predictions.json").is_file()


@pytest.mark.parametrize("damage", ["truncated", "empty", "not_a_checkpoint"])
def test_a_checkpoint_that_cannot_be_read_exits_2_with_one_line_naming_it(
    checkpoint, tmp_path, capsys, damage
):
    path = tmp_path / "best.pt"
    data = checkpoint.read_bytes()
    path.write_bytes(
        {"truncated": data[: len(data) // 2], "empty": b"", "not_a_checkpoint": b"hello"}[damage]
    )
    code = cli.main(["predict", str(FREIHAND_IMAGES[0]), "--model", str(path), "--out", str(tmp_path / "o")])
    assert code == cli.EXIT_USAGE
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mle-hand predict: error: ") and str(path) in lines[0]
    assert not (tmp_path / "o").exists()


def test_a_tracking_store_model_outside_a_project_is_refused_without_creating_mlflow_db(
    tmp_path, monkeypatch, capsys
):
    """Issue 38: `mle-hand predict --model runs:/...` outside the project created an empty mlflow.db."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    code = cli.main(["predict", str(FREIHAND_IMAGES[0]), "--model", "models:/hand@champion"])
    assert code == cli.EXIT_USAGE
    error = capsys.readouterr().err
    assert "model models:/hand@champion is read from an MLflow tracking store" in error
    assert "--tracking-uri or MLFLOW_TRACKING_URI" in error
    assert list(tmp_path.iterdir()) == []


def test_help_names_every_model_form(capsys):
    with pytest.raises(SystemExit):
        cli.main(["predict", "--help"])
    assert "models:/<name>@<alias>" in " ".join(capsys.readouterr().out.split())
