"""A training progress bar that costs the GPU nothing: it counts steps on the host and reads the
device's values (the loss) at most once per ``interval`` seconds.

Reading a CUDA tensor (``.item()``) makes the host wait until the GPU has run everything queued so
far, so the queue drains and the GPU idles while the host queues the next step. And tqdm's
``set_postfix`` redraws at once, ignoring ``mininterval``: in a log (no terminal) that printed one
line per step, while iterating ``tqdm(loader)`` left the counter at ``0/N`` between its own redraws.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO

from tqdm.auto import tqdm


class StepProgress:
    """``total`` steps; :meth:`step` after each one. ``read`` (called at most once per ``interval``
    seconds, and only when shown) returns the postfix fields, e.g. ``{"loss": "0.512"}``."""

    def __init__(
        self,
        total: int,
        desc: str,
        read: Callable[[], dict[str, str]],
        enabled: bool = True,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        file: IO[str] | None = None,
    ):
        self.bar = tqdm(
            total=total,
            desc=desc,
            unit="batch",
            disable=not enabled,
            leave=False,
            mininterval=interval,
            file=file,
        )
        self.read, self.enabled, self.interval, self.clock = read, enabled, interval, clock
        self.last_read = clock()

    def step(self) -> None:
        # The postfix is set without a redraw; the update below redraws when tqdm's mininterval allows.
        if self.enabled and self.clock() - self.last_read >= self.interval:
            self.bar.set_postfix(self.read(), refresh=False)
            self.last_read = self.clock()
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
