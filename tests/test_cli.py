"""The ``mle-hand`` console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import click
import pytest
from predict_helpers import FREIHAND_IMAGES, RHD_IMAGES, save_checkpoint

from mle_hand_pipeline import cli


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("model") / "best.pt")


def test_predict_writes_outputs_and_exits_0(checkpoint, tmp_path, capsys):
    code = cli.main(
        ["predict", *map(str, RHD_IMAGES), "--model", str(checkpoint), "--box", "20,20,200,220",
         "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert code == cli.EXIT_OK, capsys.readouterr().err
    document = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert len(document["predictions"]) == len(RHD_IMAGES) and not document["failures"]
    assert document["predictions"][0]["box"] == [20, 20, 200, 220]
    assert document["predictions"][0]["crop"]["side"] == pytest.approx(1.5 * 200)
    assert sorted(p.name for p in (tmp_path / "out" / "overlays").iterdir()) == [p.name for p in RHD_IMAGES]
    assert "3 image(s) predicted with torch" in capsys.readouterr().out


@pytest.mark.slow
def test_predict_keeps_going_past_a_bad_file_and_exits_1(checkpoint, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    args = ["predict", str(FREIHAND_IMAGES[0]), str(bad), str(FREIHAND_IMAGES[1]), "--model", str(checkpoint)]
    code = cli.main([*args, "--backend", "onnx", "--out", str(tmp_path / "out")])
    assert code == cli.EXIT_SOME_FAILED
    err = capsys.readouterr().err
    assert f"FAILED {bad}: cannot read image" in err and "1 of 3 image(s) failed" in err
    document = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert len(document["predictions"]) == 2 and document["backend"] == "onnx"


def test_missing_model_and_bad_box_exit_2_with_a_message(tmp_path, capsys):
    image = str(FREIHAND_IMAGES[0])
    assert cli.main(["predict", image, "--model", str(tmp_path / "none.pt")]) == cli.EXIT_USAGE
    assert "none.pt' not found" in capsys.readouterr().err
    assert cli.main(["predict", image, "--model", "x.pt", "--box", "1,2,3"]) == cli.EXIT_USAGE
    assert "four numbers" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # argparse: unknown backend
        cli.main(["predict", image, "--model", "x.pt", "--backend", "tvm"])
    assert exit_info.value.code == 2


@pytest.mark.slow
def test_export_onnx_command(checkpoint, tmp_path, capsys):
    assert cli.main(["export-onnx", "--model", str(checkpoint), "--out", str(tmp_path / "m.onnx")]) == 0
    assert (tmp_path / "m.onnx").stat().st_size > 1000
    assert "max abs difference to PyTorch" in capsys.readouterr().out


def test_console_script_is_installed():
    executable = shutil.which("mle-hand") or os.path.join(os.path.dirname(os.sys.executable), "mle-hand")
    done = subprocess.run([executable, "predict", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--box" in done.stdout and "--backend" in done.stdout


def test_kedro_sees_a_project_command_group_that_only_wraps_run():
    """Kedro requires `<package>.cli.cli` to be a click group once cli.py exists; it adds no command,
    it only wraps `kedro run` (loaded on use: `mle-hand` imports no Kedro CLI)."""
    assert isinstance(cli.cli, click.Group) and not cli.cli.commands
    assert cli.cli.list_commands(None) == ["run"] and cli.cli.get_command(None, "new") is None


def test_kedro_run_never_ends_as_aborted_on_an_eoferror(capsys):
    """Issue 18: numpy's EOFError on an emptied file ended `kedro run` with only `Aborted!` (click
    reads EOFError as Ctrl-D); the project's `run` re-raises it as an error the summary reports."""
    from mle_hand_pipeline.cli import EndOfFileError, _without_abort

    kedro_run = cli.cli.get_command(None, "run")
    assert kedro_run.name == "run" and "--pipelines" in {o for p in kedro_run.params for o in p.opts}

    def read_empty_file():
        raise EOFError("No data left in file")

    command = _without_abort(click.Command("run", callback=read_empty_file))
    with pytest.raises(EndOfFileError, match=r"unexpected end of file \(No data left in file\)") as raised:
        command.main([], standalone_mode=True)
    assert isinstance(raised.value.__cause__, EOFError)
    assert "Aborted!" not in capsys.readouterr().err

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit):  # Ctrl-C still aborts
        _without_abort(click.Command("run", callback=interrupted)).main([], standalone_mode=True)
    assert "Aborted!" in capsys.readouterr().err
