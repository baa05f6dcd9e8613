"""Thin MLflow helpers for what kedro-mlflow's catalog datasets cannot do: live per-epoch metrics
(also from DDP worker processes) and files produced inside a node. Everything is a no-op when no
MLflow run is active, so nodes also run under a plain ``SequentialRunner`` in tests."""

from __future__ import annotations

import contextlib
import logging
import math
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mle_hand_pipeline.grid.mlflow_runs import GROUP_TAG, comparison_group
from mle_hand_pipeline.training.checkpoint import load_checkpoint
from mle_hand_pipeline.training.run_dirs import LAST_CHECKPOINT, RunDir, claim_run_dir, local_run_id
from mle_hand_pipeline.training.runs import train_method

logger = logging.getLogger(__name__)


class EpochLogger:
    """Logs each epoch's history row to a given run; picklable, so DDP rank 0 can call it."""

    def __init__(self, run_id: str, tracking_uri: str):
        self.run_id = run_id
        self.tracking_uri = tracking_uri

    def __call__(self, row: dict[str, Any]) -> None:
        client = MlflowClient(self.tracking_uri)
        step = int(row["epoch"])
        numbers = {k: v for k, v in row.items() if k != "epoch" and isinstance(v, int | float)}
        metrics = [Metric(k, v, int(time.time() * 1000), step) for k, v in _loggable(numbers).items()]
        try:  # one request per epoch: a dead server costs one call's retries, not one per metric
            client.log_batch(self.run_id, metrics=metrics)
        except (MlflowException, OSError) as error:
            raise TrackingLostError(
                f"epoch {step} is saved (the run folder's last.pt) but could not be logged to the MLflow "
                f"tracking store {self.tracking_uri}, so the run stops here: {error}. Once the store answers "
                "again, continue with --params=<dataset>.train.resume=true"
            ) from error


class TrackingLostError(RuntimeError):
    """The tracking store stopped answering while a run trained; the checkpoints are on disk."""


def active_epoch_logger() -> EpochLogger | None:
    run = mlflow.active_run()
    return EpochLogger(run.info.run_id, mlflow.get_tracking_uri()) if run else None


def _loggable(metrics: dict[str, float]) -> dict[str, float]:
    """``metrics`` as floats, a non-finite value as NaN (MLflow would store infinity as the largest
    float, which reads as a real value), with a warning naming them: a diverged run's metrics stay
    visible as NaN instead of disappearing."""
    values = {key: float(value) for key, value in metrics.items()}
    bad = sorted(key for key, value in values.items() if not math.isfinite(value))
    if bad:
        logger.warning("non-finite metric(s) logged as NaN: %s", ", ".join(bad))
    return {key: (value if math.isfinite(value) else math.nan) for key, value in values.items()}


def log_metrics(metrics: dict[str, float], prefix: str = "") -> None:
    if mlflow.active_run():
        mlflow.log_metrics(_loggable({f"{prefix}{k}": v for k, v in metrics.items()}))


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    if mlflow.active_run():
        mlflow.log_artifact(str(path), artifact_path)


def log_dict(data: dict[str, Any], artifact_file: str) -> None:
    if mlflow.active_run():
        mlflow.log_dict(data, artifact_file)


def register_logged_model(name: str, alias: str | None = None, artifact: str = "model") -> str:
    """Register the active run's logged model ``artifact`` as a new version of the registered model
    ``name`` (created if new) and point ``alias`` at it; tag the run ``registered_model`` =
    ``models:/<name>/<version>``. Returns that URI. Load it back as ``models:/<name>/<version>`` or
    ``models:/<name>@<alias>``."""
    run_id = mlflow.active_run().info.run_id
    version = mlflow.register_model(f"runs:/{run_id}/{artifact}", name).version
    if alias:
        MlflowClient().set_registered_model_alias(name, alias, version)
    uri = f"models:/{name}/{version}"
    mlflow.set_tag("registered_model", uri)
    logger.info("registered %s%s", uri, f" (alias {alias}: models:/{name}@{alias})" if alias else "")
    return uri


def active_run_id() -> str | None:
    run = mlflow.active_run()
    return run.info.run_id if run else None


def link_resumed_run(previous_run_id: str | None) -> None:
    """Link the active run to the MLflow run it resumes: tag ``resumed_from`` here and ``resumed_by``
    there. The previous run's process is gone (its run folder was unlocked), so if its MLflow status
    is still RUNNING (a SIGKILL, a power cut) it is closed as KILLED."""
    run = mlflow.active_run()
    if run is None or not previous_run_id:
        return
    mlflow.set_tag("resumed_from", previous_run_id)
    client = MlflowClient()
    try:
        previous = client.get_run(previous_run_id)
    except mlflow.exceptions.MlflowException as error:  # tracked in another store, or the store failed
        logger.warning(
            "resumed run %s is not readable in this tracking store (%s): not linked back to it",
            previous_run_id,
            error,
        )
        return
    client.set_tag(previous_run_id, "resumed_by", run.info.run_id)
    if previous.info.status == "RUNNING":
        client.set_terminated(previous_run_id, "KILLED")


@contextlib.contextmanager
def tracked_run_dir(
    method_dir: str | Path, resume: bool | str, accept: Callable[[Path], None] | None = None
) -> Iterator[RunDir]:
    """:func:`~.training.run_dirs.claim_run_dir` named after the active MLflow run (a local timestamp id
    without one), linked to the MLflow run it resumes (:func:`link_resumed_run`)."""
    tracking_id = active_run_id()
    with claim_run_dir(method_dir, tracking_id or local_run_id(), resume, tracking_id, accept) as run:
        link_resumed_run(run.resumed_tracking_id)
        if run.resumed_from is not None:
            log_resumed_history(run.path / LAST_CHECKPOINT)
        yield run


def log_resumed_history(checkpoint: str | Path) -> None:
    """Log the epochs a resumed checkpoint already trained to the active run, so its curves start at
    epoch 1 like an uninterrupted run's (the interrupted run may have saved an epoch it never logged)."""
    epoch_logger = active_epoch_logger()
    if epoch_logger is None or not Path(checkpoint).is_file():
        return
    for row in load_checkpoint(checkpoint)["history"]:
        epoch_logger(row)


EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def mark_training_experiment() -> None:
    """Tag the active run's experiment as model training (:data:`EXPERIMENT_KIND`), so MLflow's UI opens
    it on its runs; an experiment created before the project set the tag at creation gets it here."""
    run = mlflow.active_run()
    if run is None:
        return
    client = MlflowClient()
    tags = client.get_experiment(run.info.experiment_id).tags
    for key, value in EXPERIMENT_KIND.items():
        if tags.get(key) != value:
            client.set_experiment_tag(run.info.experiment_id, key, value)


def tag_run(params: dict[str, Any]) -> None:
    """Set the ``tracking`` parameter block on the active run: ``tags`` (``{name: value}``) and
    ``run_name`` (when set). A comparison tags each of its training runs this way."""
    if not mlflow.active_run():
        return
    tags = {str(k): str(v) for k, v in (params.get("tags") or {}).items()}
    if params.get("run_name"):
        tags["mlflow.runName"] = str(params["run_name"])
    if "comparison" in tags:  # a comparison's cell: nested under the comparison's group run
        run = mlflow.active_run()
        tags["mlflow.parentRunId"] = comparison_group(
            MlflowClient(), run.info.experiment_id, tags["comparison"]
        )
    mlflow.set_tags(tags)


def log_comparison_report(
    comparison: str, summary: pd.DataFrame, metrics: list[str], files: dict[str, Any]
) -> None:
    """Put a comparison's answer on its group run (:func:`~.grid.mlflow_runs.comparison_group`, in the
    active run's experiment): per method x noise x init ``<method>.<noise>.<init>.<metric>_{mean,ci_low,
    ci_high}`` metrics and ``files`` (``{name: text, DataFrame or matplotlib Figure}``) under
    ``comparison/``; the active (report) run is tagged and nested under it too."""
    run = mlflow.active_run()
    if run is None:
        return
    client = MlflowClient()
    group = comparison_group(client, run.info.experiment_id, comparison)
    mlflow.set_tags({"comparison": comparison, GROUP_TAG: "report", "mlflow.parentRunId": group})
    values = []
    for row in summary.to_dict("records"):
        for metric in metrics:
            for stat in ("mean", "ci_low", "ci_high"):
                value = row.get(f"{metric}_{stat}")
                if value is not None and math.isfinite(float(value)):
                    key = f"{row['method']}.{row['noise']}.{row['init']}.{metric}_{stat}"
                    values.append(Metric(key, float(value), int(time.time() * 1000), 0))
    for start in range(0, len(values), 1000):  # MLflow's batch limit
        client.log_batch(group, metrics=values[start : start + 1000])
    with tempfile.TemporaryDirectory() as folder:
        for name, content in files.items():
            path = Path(folder) / name
            if isinstance(content, pd.DataFrame):
                content.to_csv(path, index=False)
            elif isinstance(content, str):
                path.write_text(content)
            else:
                content.savefig(path, dpi=110)
            client.log_artifact(group, str(path), "comparison")


SPLIT_CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}


def log_crop_store_inputs(crops_dir: str | Path, splits: tuple[str, ...]) -> None:
    """Log each split of the crop store at ``crops_dir`` that the active run reads as an MLflow dataset
    input: name ``<store>/<split>``, source the store's folder, digest the split array's sha256 from the
    store's manifest (its first 32 hex digits), tag ``rows``; MLflow's UI lists and filters runs by it."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    from mle_hand_pipeline.datasets.crop_store import CropStore

    if mlflow.active_run() is None:
        return
    store = crops_dir if isinstance(crops_dir, CropStore) else CropStore(crops_dir)
    with warnings.catch_warnings():  # MLflow registers its local source twice and says so each time
        warnings.filterwarnings("ignore", "The specified dataset source can be interpreted in multiple ways")
        source = resolve_dataset_source(str(Path(store.root).resolve()))
    for split in splits:
        entry = store.manifest["splits"].get(split)
        if entry is None:
            continue
        digest = (entry.get("array") or {}).get("sha256") or entry["fingerprint"]
        dataset = MetaDataset(source=source, name=f"{store.root.name}/{split}", digest=digest[:32])
        _log_input(dataset, context=SPLIT_CONTEXTS.get(split, split), tags={"rows": str(entry["n"])})


# MLflow's SQL store looks a dataset up, then inserts it: two runs logging the same new dataset at once
# (a grid's first cells) race, and the second fails on the table's unique key. The dataset exists then.
_DATASET_RACE = re.compile(
    r"UNIQUE constraint failed: datasets\.|duplicate key value .*datasets", re.IGNORECASE
)


def _log_input(dataset: Any, **kwargs: Any) -> None:
    """``mlflow.log_input``, tried a second time when a concurrent run inserted the same dataset first."""
    try:
        mlflow.log_input(dataset, **kwargs)
    except MlflowException as error:
        if not _DATASET_RACE.search(str(error)):
            raise
        logger.info("dataset %s was logged by another run at the same moment: linking it", dataset.name)
        mlflow.log_input(dataset, **kwargs)


def train_tracked(
    hands: pd.DataFrame,
    crops_dir: str | Path,
    checkpoint_root: str | Path,
    model_params: dict[str, Any],
    train_params: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """:func:`~.training.runs.train_method` tracked in the active MLflow run: live per-epoch metrics, a
    run folder named after the run (:func:`tracked_run_dir`), the best checkpoint as an artifact and
    the machine as ``machine.*`` tags (CPU model, instruction set, versions: results compare exactly
    only between runs on the same kind of machine)."""
    log_crop_store_inputs(crops_dir, ("train", "val"))
    history, report = train_method(
        hands,
        crops_dir,
        checkpoint_root,
        model_params,
        train_params,
        on_epoch_end=active_epoch_logger(),
        log_metrics=log_metrics,
        claim_run_dir=tracked_run_dir,
    )
    log_artifact(report["best_checkpoint"], "checkpoints")
    if mlflow.active_run():
        mlflow.set_tags({f"machine.{key}": str(value) for key, value in report["machine"].items()})
        mark_training_experiment()
    return history, report
