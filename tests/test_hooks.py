"""Project hooks that need no `kedro run`: the closing error summary and parameter validation."""

import os
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


def test_an_error_while_ending_the_run_does_not_replace_the_nodes_error(capsys, monkeypatch):
    """Issue 38: with the tracking server dead mid-run, the last line named kedro-mlflow's cleanup error;
    the error with the resume hint was 70 lines above."""
    monkeypatch.setattr(sys, "excepthook", lambda *args: None)
    summary = hooks.ErrorSummary()
    summary.after_context_created(context=None)
    lost = RuntimeError("epoch 3 is saved but could not be logged: continue with train.resume=true")
    summary.on_node_error(lost, Node(len, "x", "y", name="rhd.train_model"), None, {}, False)
    try:
        try:
            raise lost
        except RuntimeError:
            raise ConnectionError(
                "MlflowException: API request to endpoint /runs/update failed\nmore"
            ) from None
    except ConnectionError as cleanup:
        sys.excepthook(ConnectionError, cleanup, None)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == "kedro run failed in node rhd.train_model: RuntimeError: " + str(lost)
    assert (
        lines[-2] == "(then, while ending the run: ConnectionError: MlflowException: API request to "
        "endpoint /runs/update failed)"
    )


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
        hooks.ValidateRun().before_pipeline_run({}, pipeline, catalog)
    assert [p.split(" ")[0] for p in error.value.problems] == [
        "rhd.evaluate.anything",
        "rhd.model.method",
        "rhd.train.lr",
    ]


def _validate(blocks, catalog=None):
    catalog = catalog or DataCatalog()
    for name, block in blocks.items():
        catalog[f"params:{name}"] = block
    pipeline = Pipeline([Node(lambda *a: None, [f"params:{n}" for n in blocks], None)])
    with pytest.raises(ParameterError) as error:
        hooks.ValidateRun().before_pipeline_run({}, pipeline, catalog)
    return error.value.problems


def test_a_key_nothing_reads_is_refused_with_the_known_ones():
    """Issue 18, row 10: rhd.evaluate.register_model=x (then a key nothing read) was accepted without a
    word. (register_model is becoming a real key, so a key that stays unread stands in for it.)"""
    (problem,) = _validate({"rhd.evaluate": {"checkpoint": "best", "save_model_as": "x"}})
    assert problem.startswith(
        "rhd.evaluate.save_model_as is not a parameter; known: batch_size, checkpoint, "
    )
    assert "keep_checkpoints, log_model, model, register_alias" in problem


@pytest.mark.parametrize(
    ("name", "block", "message"),
    [
        (
            "rhd.evaluate",
            {"checkpoint": "newest"},
            "rhd.evaluate.checkpoint must be one of best, last, got 'newest'",
        ),
        (
            "predict",
            {"images": "x", "backend": "tensorrt"},
            "predict.backend must be one of torch, onnx, got 'tensorrt'",
        ),
        ("predict", {"images": "x", "overlay": True}, "predict.overlay is not a parameter; known: backend, "),
        ("rhd.compare", {"methods": "mle+dsnt"}, "rhd.compare.methods: unknown ['dsnt']; valid: mle, "),
        (
            "rhd.compare",
            {"keep_checkpoints": "some"},
            "rhd.compare.keep_checkpoints must be one of best, all, ",
        ),
        (
            "rhd.compare",
            {"resume_interrupted": "yes"},
            "rhd.compare.resume_interrupted must be true or false, got 'yes'",
        ),
        (
            "rhd.compare",
            {"job": 2},
            "rhd.compare.job is not a parameter; known: inits, jobs, keep_checkpoints",
        ),
        (
            "rhd.preprocess",
            {"on_bad_sample": "ignore"},
            "rhd.preprocess.on_bad_sample must be one of raise, skip",
        ),
        (
            "rhd.preprocess",
            {"split_ratios": {"train": 0.8, "val": 0.1, "test": 0.1}},
            "rhd.preprocess.split_ratios is not a parameter; known: crop, ",
        ),
        (
            "freihand.preprocess",
            {"crop": {"format": "png"}},
            "freihand.preprocess.crop.format is not a parameter",
        ),
        (
            "pretrain_rhd.preprocess",
            {"val_ratio": 1.5},
            "pretrain_rhd.preprocess.val_ratio must be a number in",
        ),
    ],
)
def test_every_block_a_pipeline_reads_is_checked(name, block, message):
    (problem,) = _validate({name: block})
    assert problem.startswith(message), problem


def test_a_resume_run_id_is_resolved_before_the_run(tmp_path):
    """Issue 18, row 9: train.resume=deadbeef failed only after an MLflow run and a folder were made."""
    from mle_hand_pipeline.io import FolderDataset

    (tmp_path / "mle" / "run1").mkdir(parents=True)
    (tmp_path / "mle" / "run1" / "last.pt").write_bytes(b"")
    catalog = DataCatalog({"rhd.checkpoints": FolderDataset(str(tmp_path))})
    catalog["params:rhd.model"] = {"method": "mle"}
    problems = _validate({"rhd.train": {"resume": "deadbeef"}}, catalog)
    assert problems == [
        f"rhd.train.resume: train.resume=deadbeef: no checkpoint {tmp_path}/mle/deadbeef/last.pt; "
        "runs with one: ['run1']"
    ]
    assert sorted(p.name for p in (tmp_path / "mle").iterdir()) == ["run1"]  # nothing made
    problems = _validate({"rhd.train": {"resume": True, "data_on_device": "maybe"}}, catalog)
    assert problems == ["rhd.train.data_on_device must be auto, true or false, got 'maybe'"]


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


def test_a_second_preprocessing_run_on_one_output_stops_at_once_naming_the_first(tmp_path):
    """Issue 18, row 12: two rhd_preprocess 1 s apart: the first failed in plot_crop_grid on a crop
    the second replaced. The first now holds the store's writer lock until its pipeline ends."""
    import os

    from mle_hand_pipeline.datasets.crop_store import CropStoreBusyError, lock_path
    from mle_hand_pipeline.io import CropStoreDataset

    crops = tmp_path / "rhd_crops"
    catalog = DataCatalog({"rhd.crops": CropStoreDataset(str(crops))})
    writes = Pipeline([Node(lambda: None, None, "rhd.crops", name="crop")])
    reads = Pipeline([Node(lambda c: None, "rhd.crops", None, name="train")])
    first, second = hooks.LockDataFolders(), hooks.LockDataFolders()
    first.before_pipeline_run({}, writes, catalog)
    assert lock_path(crops).read_text().startswith(f"pid {os.getpid()}, since ")
    with pytest.raises(CropStoreBusyError) as busy:
        second.before_pipeline_run({}, writes, catalog)
    assert str(busy.value).startswith(f"another preprocessing run (pid {os.getpid()}, since ")
    assert f"is writing {crops}: wait for it to end, then run again" in str(busy.value)
    with pytest.raises(CropStoreBusyError, match=rf"^preprocessing \(pid {os.getpid()}, since .*is writing"):
        second.before_pipeline_run({}, reads, catalog)  # a reader does not start on a store being written
    first.on_pipeline_error(RuntimeError(), {}, writes, catalog)
    assert not lock_path(crops).exists()
    second.before_pipeline_run({}, writes, catalog)  # free again
    second.after_pipeline_run({}, {}, writes, catalog)
    assert not lock_path(crops).exists()


def test_preprocessing_is_refused_while_a_run_reads_the_store_naming_that_run(tmp_path):
    """Issue 38: rhd_preprocess during a training's epoch 2 succeeded; the run trained on the old crops,
    was tested on the new store and logged the old summary. Readers now hold a shared lock for their run."""
    import os

    from mle_hand_pipeline.datasets.crop_store import CropStoreBusyError
    from mle_hand_pipeline.io import CropStoreDataset

    crops = tmp_path / "rhd_crops"
    catalog = DataCatalog({"rhd.crops": CropStoreDataset(str(crops))})
    writes = Pipeline([Node(lambda: None, None, "rhd.crops", name="crop")])
    reads = Pipeline([Node(lambda c: None, "rhd.crops", None, name="train")])
    training, cell, preprocess = hooks.LockDataFolders(), hooks.LockDataFolders(), hooks.LockDataFolders()
    training.before_pipeline_run({"pipeline_names": ["train_rhd"], "run_id": "s1"}, reads, catalog)
    cell.before_pipeline_run({"pipeline_names": ["train_rhd"], "run_id": "s2"}, reads, catalog)  # shared
    with pytest.raises(CropStoreBusyError) as busy:
        preprocess.before_pipeline_run({}, writes, catalog)
    message = str(busy.value)
    assert message.startswith(f"{crops} is being read by pid {os.getpid()} (kedro run --pipelines=train_rhd")
    assert "session s1" in message and "session s2" in message
    assert "preprocessing would replace the crops under it" in message
    training.after_pipeline_run({}, {}, reads, catalog)
    with pytest.raises(CropStoreBusyError, match="session s2"):  # one reader left
        preprocess.before_pipeline_run({}, writes, catalog)
    cell.on_pipeline_error(RuntimeError(), {}, reads, catalog)
    preprocess.before_pipeline_run({}, writes, catalog)  # free once nobody reads
    preprocess.after_pipeline_run({}, {}, writes, catalog)


def test_a_second_run_writing_the_same_reports_stops_at_once_naming_the_first(tmp_path):
    """Issue 38: two trainings at once left one set of data/08_reporting/rhd/ files, last writer wins."""
    from kedro.io import CachedDataset
    from kedro_datasets.json import JSONDataset

    def catalog_writing_to(folder):
        report = CachedDataset(dataset=JSONDataset(filepath=str(folder / "training_report.json")))
        return DataCatalog({"rhd.training_report": report})

    writes = Pipeline([Node(lambda: {}, None, "rhd.training_report", name="train")])
    shared = tmp_path / "07_model_output/rhd"
    first, second, cell = hooks.LockDataFolders(), hooks.LockDataFolders(), hooks.LockDataFolders()
    first.before_pipeline_run(
        {"pipeline_names": ["train_rhd"], "run_id": "s1"}, writes, catalog_writing_to(shared)
    )
    with pytest.raises(hooks.OutputsBusyError) as busy:
        second.before_pipeline_run(
            {"pipeline_names": ["train_rhd"], "run_id": "s2"}, writes, catalog_writing_to(shared)
        )
    assert f"(pid {os.getpid()}, kedro run --pipelines=train_rhd, session s1, since " in str(busy.value)
    assert f"writes its reports in {shared}: wait for it to end" in str(busy.value)
    # a comparison's cell writes in its own folder (MLE_HAND_RUN_OUTPUTS): it runs beside the first
    cell.before_pipeline_run({}, writes, catalog_writing_to(tmp_path / "cells/mle-clean-scratch-s0"))
    first.after_pipeline_run({}, {}, writes, catalog_writing_to(shared))
    second.before_pipeline_run({}, writes, catalog_writing_to(shared))  # free once the first ended
    second.after_pipeline_run({}, {}, writes, catalog_writing_to(shared))
    cell.after_pipeline_run({}, {}, writes, None)
