"""The parallel runner, with fake commands instead of training runs."""

import sys

from mle_hand_pipeline.grid.runner import Job, run_jobs, threads_per_job

# Starts, marks itself started, then waits (up to 60 s) until every job of its group has started:
# it only succeeds if the jobs really run at the same time.
WAIT_FOR_ALL = """
import os, pathlib, sys, time
folder, me, n = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
(folder / me).touch()
deadline = time.monotonic() + 60
while len(list(folder.iterdir())) < n:
    if time.monotonic() > deadline:
        sys.exit("the other jobs never started")
    time.sleep(0.05)
print("threads", os.environ["OMP_NUM_THREADS"])
"""


def test_jobs_run_in_parallel_and_a_failure_does_not_stop_the_others(tmp_path):
    started = tmp_path / "started"
    started.mkdir()
    jobs = [
        Job(
            f"cell{i}",
            [sys.executable, "-c", WAIT_FOR_ALL, str(started), f"cell{i}", "2"],
            tmp_path / f"logs/cell{i}.log",
        )
        for i in range(2)
    ]
    failing = Job(
        "bad",
        [sys.executable, "-c", "print('loading'); raise SystemExit('ValueError: lr must be > 0')"],
        tmp_path / "logs/bad.log",
    )
    missing = Job("missing", [str(tmp_path / "no-such-program")], tmp_path / "logs/missing.log")
    env = {"PATH": "/usr/bin:/bin"}
    outcomes = run_jobs([failing, *jobs, missing], processes=2, env=env, progress=False)
    assert [o.key for o in outcomes] == ["bad", "cell0", "cell1", "missing"]
    assert [o.returncode for o in outcomes[1:3]] == [0, 0]
    assert outcomes[0].returncode == 1 and outcomes[0].error == "ValueError: lr must be > 0"
    assert outcomes[3].returncode == -1 and "could not start" in outcomes[3].error
    # each job's output in its own log; the cores split between the 2 processes
    assert (tmp_path / "logs/cell0.log").read_text().strip() == f"threads {threads_per_job(2)}"


def test_threads_per_job():
    assert (
        threads_per_job(1, cpus=16) == 16
        and threads_per_job(3, cpus=16) == 5
        and threads_per_job(4, cpus=2) == 1
    )
