"""Run command lines in N parallel processes with a progress bar over them; a failure is recorded and
the others go on. Each command's output goes to its own log file (their outputs would interleave)."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    key: str
    argv: Sequence[str]
    log: Path
    env: Mapping[str, str] = field(default_factory=dict)  # over the shared environment, for this job


@dataclass(frozen=True)
class Outcome:
    """``returncode`` 0 is success; ``error`` is the last non-empty line of the log otherwise."""

    key: str
    returncode: int
    wall_s: float
    log: Path
    error: str = ""


def last_line(path: Path) -> str:
    """The last non-empty line of a log (where the project's runs put their error message)."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError as error:
        return f"log unreadable: {error}"
    return lines[-1] if lines else "(empty log)"


def threads_per_job(processes: int, cpus: int | None = None) -> int:
    """CPU threads for each of ``processes`` concurrent jobs, so that together they fill the machine."""
    return max(1, (cpus or os.cpu_count() or 1) // max(1, processes))


def run_jobs(
    jobs: Sequence[Job],
    processes: int = 1,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    poll_s: float = 0.2,
    progress: bool = True,
) -> list[Outcome]:
    """Run ``jobs`` at most ``processes`` at a time; returns their outcomes in the order of ``jobs``.

    ``env`` (default: this process's) gets ``OMP_NUM_THREADS`` = cores / processes unless it is set,
    so parallel jobs do not oversubscribe the CPU, ``PYTHONUNBUFFERED=1`` and ``COLUMNS=200``. If
    this process is interrupted (Ctrl-C, SIGTERM raised as an exception), running jobs end first.
    """
    if processes < 1:
        raise ValueError(f"compare.jobs must be >= 1, got {processes}")
    env = dict(os.environ if env is None else env)
    env.setdefault("OMP_NUM_THREADS", str(threads_per_job(processes)))
    env.setdefault("PYTHONUNBUFFERED", "1")  # the log in order, live: the error message stays last
    env.setdefault("COLUMNS", "200")  # rich logging wraps at 80 columns without a terminal
    queue = deque(jobs)
    running: dict[str, tuple[subprocess.Popen, float, Job]] = {}
    outcomes: dict[str, Outcome] = {}
    bar = tqdm(total=len(jobs), desc="cells", unit="cell", disable=not progress, mininterval=1.0)
    try:
        while queue or running:
            while queue and len(running) < processes:
                job = queue.popleft()
                job.log.parent.mkdir(parents=True, exist_ok=True)
                with open(job.log, "w") as log:  # the child keeps its own handle
                    try:
                        process = subprocess.Popen(
                            list(job.argv),
                            cwd=cwd,
                            env={**env, **job.env},
                            stdout=log,
                            stderr=subprocess.STDOUT,
                        )
                    except OSError as error:  # e.g. the executable is missing
                        outcomes[job.key] = Outcome(job.key, -1, 0.0, job.log, f"could not start: {error}")
                        bar.update()
                        continue
                running[job.key] = (process, time.perf_counter(), job)
                logger.info("cell %s started (log: %s)", job.key, job.log)
            for key, (process, started, job) in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                del running[key]
                wall = time.perf_counter() - started
                outcome = Outcome(key, code, wall, job.log, "" if code == 0 else last_line(job.log))
                outcomes[key] = outcome
                if code == 0:
                    logger.info("cell %s finished in %.0f s", key, wall)
                else:
                    logger.warning("cell %s FAILED (exit %d, log %s): %s", key, code, job.log, outcome.error)
                bar.update()
            if running:
                time.sleep(poll_s)
    finally:
        for process, _, job in running.values():
            process.terminate()
            logger.warning("cell %s terminated (the comparison was interrupted)", job.key)
        for process, _, _ in running.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        bar.close()
    return [outcomes[job.key] for job in jobs]
