"""Pause the cyclic garbage collector over a burst of allocation that stays alive.

Parsing and simulating a 10,000-operation plan makes hundreds of thousands of objects (nodes,
steps, records, result entries) that all outlive the burst. Each one counts towards the next
collection, so the collector runs dozens of times and each full pass walks everything made so
far, to free nothing. The pause is process-wide (the collector is), so it nests and is shared
by threads: the collector runs again once the last paused section ends, if it ran before.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused_gc"]

_lock = threading.Lock()
_paused = 0  # sections in progress, across threads
_resume = False  # whether the collector was on when the first of them began


@contextmanager
def paused_gc() -> Iterator[None]:
    """No automatic collection while the block runs; reference counting still frees memory."""
    global _paused, _resume
    with _lock:
        if _paused == 0:
            _resume = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _lock:
            _paused -= 1
            if _paused == 0 and _resume:
                gc.enable()
