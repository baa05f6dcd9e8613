"""The project's five Kedro hooks, each doing what only a hook can: refuse a run before it starts
(:class:`ValidateRun`), lock the folders a run reads and writes (:class:`LockDataFolders`), record an
interrupted run as KILLED in MLflow (:class:`MarkInterruptedRuns`), end a failed command with its
error message (:class:`ErrorSummary`), and give the comparison grid the parent run's environment and
``--params`` (:class:`KedroRunParams`). Policy lives in the catalog and in named nodes, not here."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog
from kedro.pipeline import Node, Pipeline
from mlflow.tracking import MlflowClient

from mle_hand_pipeline.datasets.crop_store import fcntl, open_locked, reader_lock, writer_lock
from mle_hand_pipeline.parameters import CompareParams, EvaluateParams, ParameterBlock, PredictParams
from mle_hand_pipeline.tracking_server import (
    apply_http_defaults,
    check_credentials,
    check_tracking_server,
    tracking_uri_of,
)
from mle_hand_pipeline.training.run_dirs import check_resume
from mle_hand_pipeline.training.validation import (
    ParameterError,
    unknown_parameter_blocks,
    validate_model_params,
    validate_preprocess_params,
    validate_train_params,
)

logger = logging.getLogger(__name__)


class MissingPreprocessOutputError(FileNotFoundError):
    pass


_SCHEMAS: dict[str, type[ParameterBlock]] = {
    "evaluate": EvaluateParams,
    "predict": PredictParams,
    "compare": CompareParams,
}
_VALIDATORS = {
    "model": validate_model_params,
    "train": validate_train_params,
    "preprocess": validate_preprocess_params,
    **{name: schema.check for name, schema in _SCHEMAS.items()},
}
_BLOCK = re.compile(rf"^params:(?:(?P<namespace>.+)\.)?(?P<block>{'|'.join(_VALIDATORS)})$")


class ValidateRun:
    """Refuse a ``kedro run`` before anything is trained or written, naming what to fix.

    - After the context is created (``tryfirst``: before kedro-mlflow sets up its tracking), an
      ``http(s)`` tracking server must answer and accept this process' credentials
      (:mod:`~mle_hand_pipeline.tracking_server`).
    - Before the pipeline runs (``tryfirst``: before kedro-mlflow opens a run), every parameter block
      the pipeline reads (``model``, ``train``, ``evaluate``, ``predict``, ``compare``, ``preprocess``)
      is checked: unknown keys refused with the known ones, values checked, a ``train.resume`` run id
      resolved; errors name the full parameter path (``rhd.train.lr``). Then the preprocessed crops
      the pipeline reads and does not make must exist, else the command to run is named.
    """

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        apply_http_defaults()
        uri = tracking_uri_of(context)
        check_tracking_server(uri)
        check_credentials(uri)

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict, pipeline: Pipeline, catalog: DataCatalog) -> None:
        problems = _unknown_blocks(run_params or {})
        for name in sorted(pipeline.inputs()):
            match = _BLOCK.match(name)
            if match:
                prefix = ".".join(filter(None, (match["namespace"], match["block"])))
                block = catalog.load(name)
                if block is not None and not isinstance(block, dict):
                    continue  # a value, not a block (predict.model is a path), or a checked block
                try:
                    _VALIDATORS[match["block"]](block, prefix=prefix)
                    if match["block"] == "train":
                        _check_resume(catalog, match["namespace"], block, prefix)
                        if f"{match['namespace']}.hands" in pipeline.inputs():
                            _check_batch(catalog, match["namespace"], block, prefix)
                except ParameterError as error:
                    problems += error.problems
        if problems:
            raise ParameterError(problems)
        _require_preprocessed_data(pipeline, catalog)


PREPROCESS_OUTPUTS = {"freihand.hands": "freihand", "rhd.hands": "rhd"}


def _require_preprocessed_data(pipeline: Pipeline, catalog: DataCatalog) -> None:
    produced = pipeline.all_outputs()
    for name, dataset in PREPROCESS_OUTPUTS.items():
        if name in pipeline.inputs() and name not in produced and not catalog.exists(name):
            raise MissingPreprocessOutputError(
                f"'{name}' does not exist yet: run `kedro run --pipelines={dataset}_preprocess` first "
                f"(add --params={dataset}_root=PATH for the real {dataset.upper()} download)"
            )


def _local_folder(dataset: Any) -> Path | None:
    """The local folder a file dataset (possibly cached or logged to MLflow) saves into, else None."""
    inner = getattr(dataset, "_dataset", dataset)  # CachedDataset wraps the real one
    filepath = getattr(inner, "_filepath", None)
    if filepath is None or getattr(inner, "_protocol", "file") not in ("file", None):
        return None
    return Path(str(filepath)).parent


@contextlib.contextmanager
def _outputs_lock(folder: Path, run: str):
    """``folder/.lock`` held exclusively by this run (its line written there), else :class:`OutputsBusyError`
    naming the run that holds it."""
    if fcntl is None:  # pragma: no cover (Windows: no locks)
        yield
        return
    path = folder / ".lock"
    handle = open_locked(path, fcntl.LOCK_EX)
    if handle is None:
        holder = path.read_text().strip() if path.is_file() else "unknown"
        raise OutputsBusyError(
            f"another run ({holder}) writes its reports in {folder}: wait for it to end; runs at the same "
            "time each need their own report folder (set MLE_HAND_RUN_OUTPUTS for a training, or run the "
            "comparison pipeline, whose cells have theirs)"
        )
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, {run}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _unknown_blocks(run_params: dict) -> list[str]:
    """:func:`unknown_parameter_blocks` of the run's ``--params`` against its configuration without them."""
    runtime = run_params.get("runtime_params") or {}
    if not runtime or not run_params.get("project_path"):
        return []
    from kedro.framework.project import settings

    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(Path(run_params["project_path"]) / settings.CONF_SOURCE),
        env=run_params.get("env"),
        **settings.CONFIG_LOADER_ARGS,
    )
    return unknown_parameter_blocks(runtime, loader["parameters"])


def _check_batch(catalog: DataCatalog, namespace: str | None, train: dict, prefix: str) -> None:
    """``train.batch_size`` must not exceed the preprocessed training crops (checked before kedro-mlflow
    opens a run; the training checks again for the crops it is given)."""
    batch = (train or {}).get("batch_size")
    if not namespace or not isinstance(batch, int) or not catalog.exists(f"{namespace}.hands"):
        return
    hands = catalog.load(f"{namespace}.hands")
    count = int((hands["split"] == "train").sum()) if "split" in hands else len(hands)
    if batch > count:
        message = f"{prefix}.batch_size={batch} is larger than the {count} training crops"
        raise ParameterError([f"{message}: lower it, or preprocess more images"])


def _check_resume(catalog: DataCatalog, namespace: str | None, train: dict, prefix: str) -> None:
    """A ``train.resume`` run id must name a run folder of the method with a ``last.pt``."""
    resume = (train or {}).get("resume", False)
    if not isinstance(resume, str) or not namespace:
        return
    try:
        root = catalog.load(f"{namespace}.checkpoints")
        method = (catalog.load(f"params:{namespace}.model") or {}).get("method", "mle")
    except Exception:  # no checkpoint folder or model block in this project's catalog: the run checks
        return
    try:
        check_resume(Path(root) / method, resume)
    except (FileNotFoundError, ValueError) as error:
        raise ParameterError([f"{prefix}.resume: {error}"]) from None


class OutputsBusyError(RuntimeError):
    """Another run writes the same report folder (see :class:`LockDataFolders`)."""


# The outputs whose folder a run owns while it runs: a training's reports, an evaluation's.
RUN_REPORTS = ("training_report", "evaluation_metrics")


class LockDataFolders:
    """Hold a lock on every crop store (``<dataset>.crops``, a
    :class:`~mle_hand_pipeline.io.CropStoreDataset`) the pipeline touches, from before the run until it
    ends: the writer lock on a store it writes, so a second preprocessing run on the same output stops at
    once instead of replacing the crops the first is still reading; a reader lock on a store it only reads
    (training, evaluation, a grid cell), so preprocessing cannot replace the store under the run and
    the run's summary is the store it read (:mod:`~mle_hand_pipeline.datasets.crop_store`). And hold the
    folder of each run report it writes (:data:`RUN_REPORTS`: ``data/07_model_output/<dataset>/``, its
    ``evaluate/``) exclusively, so two runs at once never overwrite each other's reports: the second
    stops at once naming the first (a comparison's cells each have their own folder)."""

    def __init__(self) -> None:
        self._held = contextlib.ExitStack()

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict, pipeline: Pipeline, catalog: DataCatalog) -> None:
        from mle_hand_pipeline.io import CropStoreDataset

        written = pipeline.all_outputs()
        names = (run_params or {}).get("pipeline_names") or ["__default__"]
        run = f"kedro run --pipelines={','.join(names)}, session {(run_params or {}).get('run_id', '?')}"
        try:
            for name in sorted(written | pipeline.inputs()):
                dataset = catalog.get(name)
                if isinstance(dataset, CropStoreDataset):
                    lock = writer_lock(dataset._path) if name in written else reader_lock(dataset._path, run)
                    self._held.enter_context(lock)
                elif name in written and name.rpartition(".")[2] in RUN_REPORTS:
                    folder = _local_folder(dataset)
                    if folder is not None:
                        self._held.enter_context(_outputs_lock(folder, run))
        except BaseException:
            self._held.close()
            raise

    @hook_impl
    def after_pipeline_run(
        self, run_params: dict, run_result: dict, pipeline: Pipeline, catalog: DataCatalog
    ) -> None:
        self._held.close()

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict, pipeline: Pipeline, catalog: DataCatalog):
        self._held.close()


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by the SIGTERM handler, so a terminated run unwinds like Ctrl-C."""


class MarkInterruptedRuns:
    """Record a ``kedro run`` stopped by Ctrl-C or SIGTERM as KILLED in MLflow.

    kedro-mlflow closes its run as FAILED on an ``Exception`` but never sees a ``KeyboardInterrupt``,
    so MLflow's own exit handler closed it as FINISHED; and SIGTERM's default action ends the process
    with no handler at all, leaving it RUNNING. Here SIGTERM raises :class:`Interrupted` while the
    pipeline runs, and an exit handler (registered after MLflow's, so it runs first) closes a run whose
    pipeline neither finished nor failed as KILLED. SIGKILL cannot be handled: the next
    ``train.resume`` closes that run instead (``tracking.link_resumed_run``).
    """

    def __init__(self) -> None:
        self._run_id: str | None = None
        self._previous_handler: Any = None
        self._exit_handler_registered = False

    @hook_impl(trylast=True)  # after kedro-mlflow's before_pipeline_run has opened the run
    def before_pipeline_run(self, run_params: dict, pipeline: Pipeline, catalog: DataCatalog) -> None:
        run = mlflow.active_run()
        self._run_id = run.info.run_id if run else None
        if not self._exit_handler_registered:
            atexit.register(self._close_interrupted_run)
            self._exit_handler_registered = True
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            self._previous_handler = signal.signal(signal.SIGTERM, _raise_interrupted)

    @hook_impl
    def after_pipeline_run(
        self, run_params: dict, run_result: dict, pipeline: Pipeline, catalog: DataCatalog
    ):
        self._pipeline_ended()

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict, pipeline: Pipeline, catalog: DataCatalog):
        self._pipeline_ended()

    def _pipeline_ended(self) -> None:
        self._run_id = None
        if self._previous_handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._previous_handler = None

    def _close_interrupted_run(self) -> None:
        if self._run_id is None:
            return
        run_id, self._run_id = self._run_id, None
        # Every run still open in this process belongs to the interrupted pipeline (the same run can be
        # on MLflow's stack more than once, nested runs above it). Popping them all also keeps
        # MLflow's exit handler from closing them as FINISHED afterwards.
        while mlflow.active_run() is not None:
            mlflow.end_run("KILLED")
        MlflowClient().set_terminated(run_id, "KILLED")  # in case it was not on this thread's stack
        sys.stderr.write(
            f"\nInterrupted: MLflow run {run_id} is recorded as KILLED. A training run continues from its "
            "last epoch with --params=<dataset>.train.resume=true\n"
        )


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(f"terminated by {signal.Signals(signum).name}")


class ErrorSummary:
    """Make a failed ``kedro run``'s error message the last thing it prints.

    The traceback (shortened by ``conf/logging.yml``) still comes first, for developers; then the
    failing node and the error message, on their own lines at the very end. ``conf/logging_debug.yml``
    shows every frame with its local variables: ``KEDRO_LOGGING_CONFIG=conf/logging_debug.yml kedro run``.
    """

    def __init__(self) -> None:
        self._node: str | None = None
        self._error: BaseException | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        if not getattr(sys.excepthook, "_summarises_errors", False):
            sys.excepthook = _summarising_excepthook(sys.excepthook, self)

    @hook_impl
    def on_node_error(self, error: Exception, node: Node, catalog: DataCatalog, inputs: dict, is_async: bool):
        self._node, self._error = node.name, error

    def primary(self, error: BaseException) -> tuple[BaseException, BaseException | None]:
        """(the error to summarise, a later one raised while handling it): a node's error stays the
        message even when cleaning up after it failed too (kedro-mlflow ending its run on a dead
        tracking server raises while handling the node's error)."""
        context = error.__context__
        while context is not None:
            if context is self._error:
                return context, error
            context = context.__context__
        return error, None


def error_summary(error: BaseException, node: str | None = None, then: BaseException | None = None) -> str:
    """The lines that end a failed command: which one (``kedro run``, ``kedro mlflow ui``), where it
    failed and the message (for a worker process's error, which embeds the worker's traceback, the
    worker's last line); ``then``, an error raised while handling it, on the line before."""
    message = str(error).strip()
    if "Traceback (most recent call last)" in message:
        message = message.splitlines()[-1].strip()
    where = f" in node {node}" if node else ""
    command = kedro_command()
    later = ""
    if then is not None:
        first = (str(then).strip().splitlines() or [""])[0][:300]
        later = f"(then, while ending the run: {type(then).__name__}: {first})\n"
    return (
        f"\nFull traceback with local variables: KEDRO_LOGGING_CONFIG=conf/logging_debug.yml {command} ...\n"
        f"{later}{command} failed{where}: {type(error).__name__}: {message}\n"
    )


def kedro_command(argv: list[str] | None = None) -> str:
    """The Kedro command this process runs, from its arguments: ``kedro mlflow ui`` for
    ``.venv/bin/kedro mlflow ui --port 5001``; ``kedro run`` when the process is not the ``kedro``
    script (a session started in Python)."""
    argv = sys.argv if argv is None else argv
    script = Path(argv[0]) if argv else Path()
    if not (script.name == "kedro" or (script.name == "__main__.py" and script.parent.name == "kedro")):
        return "kedro run"
    words = []
    for arg in argv[1:3]:
        if arg.startswith("-"):
            break
        words.append(arg)
    return " ".join(["kedro", *words])


def _summarising_excepthook(previous, summary: ErrorSummary):
    def excepthook(exc_type: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        previous(exc_type, error, tb)
        primary, then = summary.primary(error)
        sys.stderr.write(error_summary(primary, summary._node, then))
        sys.stderr.flush()

    excepthook._summarises_errors = True
    return excepthook


class KedroRunParams:
    """Give a pipeline that launches child ``kedro run``s (the comparison grid) the parent's run:
    the dataset ``kedro_run_params`` = ``{"project_path", "env", "runtime_params"}``, so each child
    runs in the same project with the same environment and ``--params``."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline: Pipeline, catalog: DataCatalog) -> None:
        if "kedro_run_params" in pipeline.inputs():
            catalog["kedro_run_params"] = {
                "project_path": run_params["project_path"],
                "env": run_params.get("env"),
                "runtime_params": run_params.get("runtime_params") or {},
            }
