"""The OpenMP wait policy of the commands that train, chosen before torch is imported.

GNU OpenMP threads spin for a few ms at every barrier by default. On an idle machine that is the
fastest (the CPU demo's training in `kedro run` on 2 cores: 90-100 images/s, 58-62 with PASSIVE
waits); when another job holds a core, each barrier waits for a whole time slice instead (2-70x
slower: the OpenMP section of docs/benchmarks.md), so a command started on a busy machine gets
PASSIVE waits. The project's Kedro settings (every `kedro` command) call :func:`choose_wait_policy`
first; importing the package itself changes nothing.
"""

from __future__ import annotations

import os
import time


def other_tasks_running() -> bool:
    """Whether other tasks hold a CPU right now: the runnable count of /proc/loadavg, less this
    process, in the median of 5 reads 5 ms apart (the load averages lag by minutes). True where that
    file does not exist."""
    try:
        counts = []
        for _ in range(5):
            with open("/proc/loadavg") as file:
                counts.append(int(file.read().split()[3].split("/")[0]))
            time.sleep(0.005)
    except (OSError, IndexError, ValueError):
        return True
    return sorted(counts)[2] > 1


def choose_wait_policy() -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` on a busy machine; an explicit ``OMP_WAIT_POLICY`` or
    ``GOMP_SPINCOUNT`` wins. Has an effect only before torch (its OpenMP runtime) is loaded."""
    if not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & os.environ.keys() and other_tasks_running():
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
