"""Project hooks that need no `kedro run`: the closing error summary and parameter validation."""

import sys

import pytest
from kedro.io import DataCatalog
from kedro.pipeline import Node, Pipeline

from mle_hand_pipeline import hooks
from mle_hand_pipeline.training.validation import ParameterError


def test_the_error_message_is_printed_last(capsys, monkeypatch):
    printed = []
    monkeypatch.setattr(sys, "excepthook", lambda *args: printed.append("traceback"))
    summary = hooks.ErrorSummary()
    summary.after_context_created(context=None)
    summary.after_context_created(context=None)  # installed once
    summary.on_node_error(ValueError(), Node(len, "x", "y", name="rhd.train_model"), None, {}, False)
    error = ValueError("rhd.train.lr must be a positive number, got 0")
    sys.excepthook(ValueError, error, None)
    assert printed == ["traceback"]  # the (short) traceback first, once
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == "kedro run failed in node rhd.train_model: ValueError: " + str(error)
    assert "KEDRO_LOGGING_CONFIG=conf/logging_debug.yml" in lines[-2]


def test_a_worker_traceback_is_summarised_by_its_last_line():
    message = "\n\n-- Process 1 terminated:\nTraceback (most recent call last):\n  File x\nValueError: bad\n"
    assert hooks.error_summary(RuntimeError(message)).endswith("RuntimeError: ValueError: bad\n")


def test_every_invalid_block_of_the_pipeline_is_reported_before_the_run():
    pipeline = Pipeline(
        [Node(lambda m, t, e: None, ["params:rhd.model", "params:rhd.train", "params:rhd.evaluate"], None)]
    )
    catalog = DataCatalog()
    catalog["params:rhd.model"] = {"method": "foo"}
    catalog["params:rhd.train"] = {"lr": 0}
    catalog["params:rhd.evaluate"] = {"anything": "goes"}
    with pytest.raises(ParameterError) as error:
        hooks.ValidateParameters().before_pipeline_run({}, pipeline, catalog)
    assert [p.split(" ")[0] for p in error.value.problems] == ["rhd.model.method", "rhd.train.lr"]


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        ([".venv/bin/kedro", "mlflow", "ui", "--port", "5001"], "kedro mlflow ui"),
        ([".venv/bin/kedro", "run", "--pipelines=train_rhd"], "kedro run"),
        (["/x/site-packages/kedro/__main__.py", "viz", "build"], "kedro viz build"),
        (["/x/bin/pytest", "tests"], "kedro run"),  # a session started in Python
    ],
)
def test_an_error_is_labelled_by_the_command_that_failed(monkeypatch, argv, command):
    assert hooks.kedro_command(argv) == command
    monkeypatch.setattr(sys, "argv", argv)
    lines = hooks.error_summary(
        FileNotFoundError("[Errno 2] No such file or directory: 'mlflow'")
    ).splitlines()
    assert lines[-1] == f"{command} failed: FileNotFoundError: [Errno 2] No such file or directory: 'mlflow'"
    assert lines[-2].endswith(f"KEDRO_LOGGING_CONFIG=conf/logging_debug.yml {command} ...")


def test_the_environment_scripts_come_first_on_path(monkeypatch):
    import os
    import sysconfig

    scripts = sysconfig.get_path("scripts")
    monkeypatch.setenv("PATH", os.pathsep.join(["/usr/bin", "/bin"]))
    hooks.ScriptsOnPath().after_context_created(context=None)
    assert os.environ["PATH"].split(os.pathsep) == [scripts, "/usr/bin", "/bin"]
    hooks.ScriptsOnPath().after_context_created(context=None)  # once
    assert os.environ["PATH"].split(os.pathsep) == [scripts, "/usr/bin", "/bin"]
