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
