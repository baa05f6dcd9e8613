"""Per-run checkpoint folders: each training run owns ``<method_dir>/<run_id>/{best,last}.pt``.

Runs never share checkpoint files, so several can train at once (a comparison grid, two seeds).
``run_id`` is the MLflow run id when a run is active, else a timestamp (:func:`local_run_id`).

A run folder also holds ``run.json`` (status ``training`` -> ``trained``; ``failed`` with the error, or
``killed`` on Ctrl-C/SIGTERM, when the run ends otherwise; ``resumed`` once another run continued it;
the run it resumed from) and, while the run trains, ``.lock``, locked by it and removed when it ends.
The operating system releases that lock when the process ends, even on SIGKILL (the status then stays
``training`` and the file stays), so ``train.resume`` can tell an interrupted run (status ``training``,
``failed`` or ``killed``, lock free) from one still training in another process. Without ``fcntl``
(Windows) there is no lock: every such folder counts as interrupted.

Resuming copies nothing: the new run's folder starts with hard links to the interrupted run's
``last.pt``/``best.pt`` (a copy where links are impossible). Checkpoints are replaced atomically, so
the interrupted folder keeps its state as it was.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # Windows: no liveness check (see the module docstring)
    fcntl = None

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
# The files a run folder holds; training/checkpoint.py writes them (named here: this module stays torch-free).
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
CHECKPOINT_FILES = (LAST_CHECKPOINT, BEST_CHECKPOINT)
TRAINING, TRAINED, RESUMED = "training", "trained", "resumed"
FAILED, KILLED = "failed", "killed"
RESUMABLE = (TRAINING, FAILED, KILLED)  # a run that did not finish (its last.pt continues it)
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class RunInProgressError(RuntimeError):
    """The run folder asked for is being trained by another live process."""


@dataclass(frozen=True)
class RunDir:
    """A claimed run folder: ``path`` = ``<method_dir>/<run_id>``; ``resumed_from`` is the run id whose
    ``last.pt`` this run continues (None for a fresh run); ``resumed_tracking_id`` that run's MLflow id."""

    path: Path
    run_id: str
    resumed_from: str | None = None
    resumed_tracking_id: str | None = None


def local_run_id() -> str:
    """A run id when no MLflow run is active: UTC time to the microsecond and the process id."""
    return f"local-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}"


def read_run_file(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_run_file(run_dir: Path, data: dict[str, Any]) -> None:
    temporary = run_dir / f".{RUN_FILE}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(data, indent=2))
    os.replace(temporary, run_dir / RUN_FILE)  # atomic: readers see the old or the new file


def _update_run_file(run_dir: Path, **changes: Any) -> None:
    _write_run_file(run_dir, {**read_run_file(run_dir), **changes})


@contextlib.contextmanager
def _lock(run_dir: Path) -> Iterator[bool]:
    """Try to lock ``run_dir`` without waiting; yields whether this process holds the lock. The lock
    file is removed (while still locked) when the block ends, so a finished folder keeps none."""
    if fcntl is None:
        yield True
        return
    path = run_dir / LOCK_FILE
    for _ in range(3):
        handle: IO[str] = open(path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            yield False
            return
        if _same_file(handle, path):
            break
        handle.close()  # removed or replaced by its previous holder after we opened it: open it again
    else:  # pragma: no cover (three removals in a row)
        yield False
        return
    try:
        yield True
    finally:
        path.unlink(missing_ok=True)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _same_file(handle: IO[str], path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def is_interrupted(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a ``last.pt`` of a run that never finished training and that no other
    run has continued yet (a live run also counts: claiming it is what tells, see the module docstring)."""
    run_dir = Path(run_dir)
    return (run_dir / LAST_CHECKPOINT).is_file() and read_run_file(run_dir).get(
        "status", TRAINING
    ) in RESUMABLE


def _interrupted_runs(method_dir: Path) -> list[Path]:
    """Run folders of ``method_dir`` with a ``last.pt`` that never finished training, newest first."""
    if not method_dir.is_dir():
        return []
    found = [child for child in method_dir.iterdir() if is_interrupted(child)]
    return sorted(found, key=lambda child: (child / LAST_CHECKPOINT).stat().st_mtime, reverse=True)


def _resume_candidates(method_dir: Path, resume: bool | str) -> list[Path]:
    if resume is True:
        return _interrupted_runs(method_dir)
    if not isinstance(resume, str) or not _RUN_ID.match(resume):
        raise ValueError(f"train.resume must be true, false or a run id, got {resume!r}")
    source = method_dir / resume
    if not (source / LAST_CHECKPOINT).is_file():
        known = [path.parent.name for path in sorted(method_dir.glob("*/last.pt"))]
        raise FileNotFoundError(
            f"train.resume={resume}: no checkpoint {source / 'last.pt'}; runs with one: {known or 'none'}"
        )
    return [source]


def check_resume(method_dir: str | Path, resume: bool | str) -> None:
    """Raise what :func:`claim_run_dir` would for ``resume`` (a run id without a ``last.pt`` in
    ``method_dir``: ``FileNotFoundError`` listing the runs that have one), before anything is made."""
    if resume is not False:
        _resume_candidates(Path(method_dir), resume)


def _link_checkpoints(source: Path, target: Path) -> None:
    for name in CHECKPOINT_FILES:
        if (source / name).is_file():
            try:
                os.link(source / name, target / name)
            except OSError:  # another file system, or links not supported
                shutil.copy2(source / name, target / name)


@contextlib.contextmanager
def claim_run_dir(
    method_dir: str | Path,
    run_id: str,
    resume: bool | str = False,
    tracking_id: str | None = None,
    accept: Callable[[Path], None] | None = None,
) -> Iterator[RunDir]:
    """Create and lock ``method_dir/run_id`` for one training run; mark it ``trained`` when the block
    ends without an error, ``failed`` (with the error) or ``killed`` (Ctrl-C, SIGTERM) otherwise: both
    resumable. The lock is released and its file removed either way.

    ``resume``: False starts fresh; True continues the newest interrupted run of ``method_dir`` (none:
    a fresh start, logged); a run id continues that run, interrupted or not (e.g. to train further).
    The continued run is marked ``resumed`` so ``resume=true`` does not pick it again. ``tracking_id``
    (the MLflow run id, if any) is recorded in ``run.json`` so a later resume can link the two runs.
    ``accept(folder)`` may refuse the run to continue (raise) before anything is written or marked.
    """
    method_dir = Path(method_dir)
    if not _RUN_ID.match(run_id):
        raise ValueError(f"run id {run_id!r} is not a valid folder name")
    path = method_dir / run_id
    with contextlib.ExitStack() as stack:
        source = None
        if resume is not False:
            for candidate in _resume_candidates(method_dir, resume):
                if stack.enter_context(_lock(candidate)):
                    source = candidate
                    break
                if resume is not True:
                    raise RunInProgressError(
                        f"train.resume={resume}: that run is still training in another process"
                    )
            if source is None:
                logger.info("train.resume: no interrupted run in %s, starting from scratch", method_dir)
            elif accept is not None:
                accept(source)
        path.mkdir(parents=True, exist_ok=False)  # a run id is never reused
        if not stack.enter_context(_lock(path)):  # pragma: no cover (a fresh folder nobody else knows)
            raise RunInProgressError(f"{path} is locked by another process")
        resumed = read_run_file(source) if source is not None else {}
        if source is not None:
            _link_checkpoints(source, path)
            _update_run_file(source, status=RESUMED, resumed_by=run_id)
            logger.info("run %s resumes run %s from %s", run_id, source.name, source / LAST_CHECKPOINT)
        run = RunDir(path, run_id, source.name if source else None, resumed.get("tracking_id"))
        _write_run_file(
            path,
            {
                "run_id": run_id,
                "tracking_id": tracking_id,
                "status": TRAINING,
                "resumed_from": run.resumed_from,
                "started": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        try:
            yield run
        except BaseException as error:
            status = KILLED if isinstance(error, KeyboardInterrupt | SystemExit) else FAILED
            lines = str(error).strip().splitlines()
            message = f"{type(error).__name__}: {lines[-1]}" if lines else type(error).__name__
            _update_run_file(path, status=status, error=message[:1000], ended=_now())
            raise
        _update_run_file(path, status=TRAINED, ended=_now())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


RunDirClaim = Callable[..., AbstractContextManager[RunDir]]  # (method_dir, resume, accept=None)


@contextlib.contextmanager
def claim_local_run_dir(
    method_dir: str | Path, resume: bool | str = False, accept: Callable[[Path], None] | None = None
) -> Iterator[RunDir]:
    """:func:`claim_run_dir` under a :func:`local_run_id` (no tracker: library use, benchmarks, tests)."""
    with claim_run_dir(method_dir, local_run_id(), resume, accept=accept) as run:
        yield run
