"""A cap on file steps per second, shared by every apply of one process.

Each step is a request to the bucket behind gcsfuse. A large reorganisation at full speed can
crowd out the people working in the same bucket; ops set a cap (like rclone's ``--tpslimit``)
and steps are spaced evenly under it. Falling behind never earns a burst to catch up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["StepPacer"]


class StepPacer:
    """Hands out evenly spaced start times; ``per_second`` 0 means no cap."""

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not per_second >= 0:  # also refuses NaN
            raise ValueError(f"steps per second must be 0 (no cap) or more, got {per_second}")
        self.per_second = per_second
        self._interval = 1.0 / per_second if per_second else 0.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = 0.0

    def wait(self) -> None:
        """Return when the next step may start (at once when there is no cap)."""
        if not self._interval:
            return
        with self._lock:  # take a slot under the lock, sleep outside it
            now = self._clock()
            slot = max(self._next_slot, now)
            self._next_slot = slot + self._interval
        if slot > now:
            self._sleep(slot - now)
