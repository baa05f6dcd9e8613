"""The training progress bar in a log: a line per second at most, a counter that moves."""

import io

from mle_hand_pipeline.training.progress import StepProgress


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_in_a_log_reads_values_at_most_once_a_second_and_counts_steps():
    clock, log, reads = FakeClock(), io.StringIO(), []  # StringIO is not a terminal, like a log file

    def read() -> dict[str, str]:
        reads.append(clock.now)
        return {"loss": f"{len(reads):.3f}"}

    progress = StepProgress(17, "epoch 1/1", read, interval=1.0, clock=clock, file=log)
    for _ in range(17):
        clock.now += 0.25  # four steps a second
        progress.step()
    shown_before_close = log.getvalue()
    progress.close()

    assert reads == [1.0, 2.0, 3.0, 4.0]  # the device is read once a second, never per step
    frames = [f for f in shown_before_close.split("\r") if f.strip()]
    assert len(frames) < 17  # not a line per step
    # tqdm's own mininterval (real time) may skip redraws, but each one shows the true count.
    counts = [int(f.split("|")[-1].split("/")[0]) for f in frames if "|" in f]
    assert counts == sorted(counts) and counts[0] == 0


def test_progress_shows_the_current_count_with_the_values():
    clock, log = FakeClock(), io.StringIO()
    progress = StepProgress(17, "epoch 1/1", lambda: {"loss": "0.500"}, interval=1.0, clock=clock, file=log)
    progress.bar.mininterval = 0  # redraw on every update: what a one-second pause looks like
    for _ in range(5):
        clock.now += 0.5
        progress.step()
    last = [f for f in log.getvalue().split("\r") if f.strip()][-1]
    assert " 5/17 " in last and "loss=0.500" in last
    progress.close()
