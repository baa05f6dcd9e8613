"""mle_hand_pipeline: 2D hand keypoints with the MLE loss of "MLE-Loss Driven Robust Hand Pose Estimation"
(Lou, Lin, Zhu, Chen; IEEE Access 2024)."""

import os
import time


def _other_tasks_running() -> bool:
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


# GNU OpenMP threads spin for a few ms at every barrier by default. On an idle machine that is the
# fastest (the CPU demo's training in `kedro run` on 2 cores: 90-100 images/s, 58-62 with PASSIVE
# waits); when another job holds a core, each barrier waits for a whole time slice instead (2-70x
# slower: the OpenMP section of docs/benchmarks.md), so a machine busy when the package is imported
# gets PASSIVE waits. Must run before torch is imported; an explicit OMP_WAIT_POLICY or GOMP_SPINCOUNT
# wins.
if not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & os.environ.keys() and _other_tasks_running():
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

__version__ = "0.6.0"
