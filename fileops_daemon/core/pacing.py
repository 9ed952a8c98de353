"""A cap on file steps per second, shared by every apply of one process.

Each step is a request to the bucket behind gcsfuse. A large reorganisation at full speed can
crowd out the people working in the same bucket; ops set a cap (like rclone's ``--tpslimit``)
and steps are spaced evenly under it. Falling behind never earns a burst to catch up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["MIN_STEPS_PER_SECOND", "StepPacer"]

#: The slowest cap (one step every 100 s); anything slower is a typo, not a policy.
MIN_STEPS_PER_SECOND = 0.01


class StepPacer:
    """Hands out evenly spaced start times; ``per_second`` 0 means no cap."""

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not (per_second == 0 or per_second >= MIN_STEPS_PER_SECOND):  # also refuses NaN
            raise ValueError(
                f"steps per second must be 0 (no cap) or at least {MIN_STEPS_PER_SECOND}, "
                f"got {per_second}"
            )
        self.per_second = per_second
        self._interval = 1.0 / per_second if per_second else 0.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = 0.0

    def wait(self, pause: threading.Event | None = None) -> None:
        """Return when the next step may start (at once when there is no cap), or as soon as
        ``pause`` is set: a shutdown must not sit out a slow cap."""
        if not self._interval or (pause is not None and pause.is_set()):
            return
        with self._lock:  # take a slot under the lock, sleep outside it
            now = self._clock()
            slot = max(self._next_slot, now)
            self._next_slot = slot + self._interval
        if slot > now:
            if pause is None:
                self._sleep(slot - now)
            else:
                pause.wait(slot - now)
