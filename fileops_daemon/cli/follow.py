"""Following a plan through its ledger record: a line when its state or progress changes.

``fileops status --follow`` prints such lines until the plan is settled; ``fileops submit
--wait`` prints them to an interactive stderr while it waits for the result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import structlog

from fileops_daemon.client.render import printable
from fileops_daemon.service.ledger import RecordState

__all__ = ["ProgressLines", "follow_record", "progress_text"]

log = structlog.get_logger("fileops.cli")

#: How often the ledger record is read while following a plan (one small GCS read).
POLL_SECONDS = 2.0

ReadRecord = Callable[[str], Any]


def progress_text(plan_id: str, record: Any) -> str:
    """One line on where ``plan_id`` stands, from its ledger record (or its absence)."""
    name = printable(plan_id)
    if record is None:
        return f"{name}: not in the ledger yet (queued, or a dry run, which is never recorded)"
    if record.state == "done":
        status = (record.result or {}).get("status", "done")
        return f"{name}: {printable(status)}"
    if record.state == RecordState.AWAITING_APPROVAL:  # nothing runs until an operator decides
        return f"{name}: awaiting approval (fileops pending; fileops approve {name})"
    progress = record.progress or {}
    done = int(progress.get("steps_done", progress.get("done", 0)) or 0)
    total = int(progress.get("steps_total", 0) or 0)
    steps = f"{done}/{total} steps" if total else "checking"
    if record.lease_expires_at == 0:
        waiting = " (lease released: waiting for a daemon)"
    elif record.lease_expires_at < time.time():
        waiting = " (lease expired: waiting for a daemon to take it over)"
    else:
        waiting = ""
    return f"{name}: applying, {steps}, on {printable(record.owner)}{waiting}"


def follow_record(
    read: ReadRecord,
    plan_id: str,
    out: TextIO,
    *,
    timeout: float | None = None,
    poll: float = POLL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Print a line each time the plan's record changes until it is done; return that record,
    or None when ``timeout`` seconds pass first."""
    deadline = None if timeout is None else clock() + timeout
    last = ""
    while True:
        record = read(plan_id)
        line = progress_text(plan_id, record)
        if line != last:
            print(line, file=out, flush=True)
            last = line
        if record is not None and record.state == "done":
            return record
        if deadline is not None and clock() >= deadline:
            return None
        sleep(poll if deadline is None else max(0.0, min(poll, deadline - clock())))


class ProgressLines:
    """A background thread printing the plan's progress while the caller waits for its result
    (to stderr, on a terminal only: a script reading stderr gets no chatter)."""

    def __init__(self, read: ReadRecord, plan_id: str, out: TextIO, poll: float = POLL_SECONDS):
        self._read = read
        self._plan_id = plan_id
        self._out = out
        self._poll = poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fileops-progress", daemon=True)

    def __enter__(self) -> ProgressLines:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._poll + 5)

    def _run(self) -> None:
        last = ""
        while not self._stop.wait(self._poll):
            try:
                record = self._read(self._plan_id)
            except Exception as exc:  # progress is a courtesy: a failed read skips a line
                log.info("progress.read_failed", plan_id=self._plan_id, error=repr(exc))
                continue
            line = progress_text(self._plan_id, record)
            if line != last and not self._stop.is_set():
                print(line, file=self._out, flush=True)
                last = line
