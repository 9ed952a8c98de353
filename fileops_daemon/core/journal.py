"""Write-ahead journal of one plan's apply: the expanded steps, then progress marks.

Layout: ``<state_dir>/plans/<plan_id>/journal.jsonl``. The first line holds the plan's digest
and every step; later lines are ``{"done": i}``, ``{"undone": i}`` and state changes.

Durability without an fsync per step: marks are buffered, and the buffer is written and
fsynced before a step that touches a path (or a parent or child of one) that an unsynced step
touched. So the marks a crash can lose belong to steps on unrelated paths, and for each of
them the tree alone tells whether it ran (its pre- or postcondition holds).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from fileops_daemon.core.steps import Parts, Step
from fileops_daemon.core.store import create_exclusive

__all__ = ["Journal", "JournalPhase", "JournalState", "SyncHook", "from_ranges", "to_ranges"]

#: Called after every fsync with a summary of what is durable: done, undone, state, info.
#: A daemon uses it to checkpoint progress where another machine can see it (and to notice
#: that it lost its lease: the hook raises, and the apply stops).
SyncHook = Callable[[dict[str, Any]], None]

#: Marks kept unsynced at most; bounds the work a resume has to re-check.
MAX_UNSYNCED = 1024


class JournalPhase(StrEnum):
    """Where an apply stands, as its journal records it (and a checkpoint mirrors it)."""

    APPLYING = "applying"  # steps run forward
    ROLLING_BACK = "rolling_back"  # a step failed: the done ones are being undone
    APPLIED = "applied"  # final: every step ran
    ROLLED_BACK = "rolled_back"  # final: the rollback went as far as it ever will
    ROLLBACK_STUCK = "rollback_stuck"  # the rollback met a passing fault: a rerun goes on

    @property
    def rolling_back(self) -> bool:
        """A rollback is due or under way (a rerun carries it on)."""
        return self in (JournalPhase.ROLLING_BACK, JournalPhase.ROLLBACK_STUCK)


@dataclass
class JournalState:
    """What a journal says so far, read back after a crash or a restart."""

    header: dict[str, Any]
    steps: list[Step]
    done: set[int] = field(default_factory=set)  # steps that ran (any order: parallel apply)
    undone: set[int] = field(default_factory=set)  # steps rolled back
    state: JournalPhase = JournalPhase.APPLYING
    info: dict[str, Any] = field(default_factory=dict)


class Journal:
    """Append-only progress log; one writer at a time (the caller holds the plan lock)."""

    def __init__(self, path: str, fd: int, on_sync: SyncHook | None = None) -> None:
        self.path = path
        self._fd = fd
        self._on_sync = on_sync
        self._done: set[int] = set()
        self._undone: set[int] = set()
        self._state: tuple[JournalPhase, dict[str, Any]] = (JournalPhase.APPLYING, {})
        self._pending: list[bytes] = []
        self._paths: set[Parts] = set()  # paths touched by steps whose marks are not synced
        self._ancestors: set[Parts] = set()
        #: The last sync's summary went to the hook (and nothing was marked since).
        self._checkpointed = False

    # -- opening --------------------------------------------------------------------------------

    @staticmethod
    def header_line(header: dict[str, Any], steps: list[Step]) -> bytes:
        doc = dict(header, steps=[step.to_json() for step in steps])
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"

    @classmethod
    def create(cls, path: str, header_line: bytes, on_sync: SyncHook | None = None) -> Journal:
        _write_whole(path, header_line)
        return cls(path, _open_append(path), on_sync)

    @staticmethod
    def seed(path: str, header_line: bytes, summary: dict[str, Any]) -> None:
        """Rebuild a local journal from a checkpoint (a takeover on another machine).

        The ranges are checked against the header's steps before they are expanded (a crafted
        checkpoint must not make us write a billion lines); the steps themselves are checked
        when the journal is resumed. Raises StateInvalidError.
        """
        from fileops_daemon.core.trust import StateInvalidError, check_ranges

        try:
            total = len(json.loads(header_line)["steps"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StateInvalidError("the checkpoint's journal header cannot be read") from exc
        if not isinstance(summary, dict):
            raise StateInvalidError("the checkpoint's progress is not an object")
        check_ranges(summary.get("done", []), total, "the checkpoint's done steps")
        check_ranges(summary.get("undone", []), total, "the checkpoint's undone steps")
        if not isinstance(summary.get("info") or {}, dict):
            raise StateInvalidError("the checkpoint's state details are not an object")
        lines = [header_line]
        lines += [b'{"done":%d}\n' % i for i in from_ranges(summary.get("done", []))]
        lines += [b'{"undone":%d}\n' % i for i in from_ranges(summary.get("undone", []))]
        state = summary.get("state", JournalPhase.APPLYING.value)
        if state != JournalPhase.APPLYING:
            doc = dict(summary.get("info") or {}, state=state)
            lines.append(json.dumps(doc, separators=(",", ":")).encode("utf-8") + b"\n")
        _write_whole(path, b"".join(lines))

    @classmethod
    def resume(cls, path: str, on_sync: SyncHook | None = None) -> tuple[Journal, JournalState]:
        """Read the journal back, drop a torn last line, and reopen it for appending."""
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        with open(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ValueError(f"{path} is not a plain file")
            data = handle.read()
        end = data.rfind(b"\n") + 1
        lines = data[:end].splitlines()
        header = json.loads(lines[0])
        state = JournalState(
            header={k: v for k, v in header.items() if k != "steps"},
            steps=[Step.from_json(doc) for doc in header["steps"]],
        )
        for raw in lines[1:]:
            mark = json.loads(raw)
            if "done" in mark:
                state.done.add(mark["done"])
            elif "undone" in mark:
                state.undone.add(mark["undone"])
            elif "state" in mark:
                state.state = JournalPhase(mark["state"])  # ValueError: not a state of ours
                state.info = {k: v for k, v in mark.items() if k != "state"}
        if end != len(data):
            os.truncate(path, end)
        journal = cls(path, _open_append(path), on_sync)
        journal._done, journal._undone = set(state.done), set(state.undone)
        journal._state = (state.state, state.info)
        return journal, state

    # -- writing --------------------------------------------------------------------------------

    def done(self, index: int, step: Step) -> None:
        self._done.add(index)
        self._mark(b'{"done":%d}\n' % index, step)

    def undone(self, index: int, step: Step) -> None:
        self._undone.add(index)
        self._mark(b'{"undone":%d}\n' % index, step)

    def before(self, step: Step) -> None:
        """Call before running ``step``: syncs first if it touches an unsynced step's paths."""
        if self._pending and self._overlaps(step):
            self.sync()

    def set_state(self, state: JournalPhase, **info: Any) -> None:
        self._state = (state, info)
        doc = dict(info, state=state.value)
        self._pending.append(json.dumps(doc, separators=(",", ":")).encode("utf-8") + b"\n")
        self.sync()

    def sync(self) -> None:
        if self._pending:
            os.write(self._fd, b"".join(self._pending))
            self._pending.clear()
        os.fdatasync(self._fd)
        self._paths.clear()
        self._ancestors.clear()
        if self._on_sync is not None:
            hook, self._on_sync = self._on_sync, None  # a hook that raised is not called again
            self._checkpointed = False
            hook(self.summary())
            self._on_sync = hook
        self._checkpointed = True

    def close(self) -> None:
        if self._fd >= 0:
            try:
                # Only if the last sync did not cover everything: every sync writes and fsyncs
                # all pending marks and then checkpoints that summary, so after one (the usual
                # close, right after set_state's) a second would fsync nothing new and
                # checkpoint the same summary again: one GCS write in a daemon, for nothing.
                if self._pending or not self._checkpointed:
                    self.sync()
            finally:
                os.close(self._fd)
                self._fd = -1

    def summary(self) -> dict[str, Any]:
        """What the journal holds, compactly: done and undone steps as index ranges."""
        return {
            "done": to_ranges(self._done),
            "undone": to_ranges(self._undone),
            "state": self._state[0].value,
            "info": self._state[1],
        }

    def _mark(self, line: bytes, step: Step) -> None:
        self._pending.append(line)
        for parts in step.touched():
            self._paths.add(parts)
            for depth in range(1, len(parts)):
                self._ancestors.add(parts[:depth])
        if len(self._pending) >= MAX_UNSYNCED:
            self.sync()

    def _overlaps(self, step: Step) -> bool:
        for parts in step.touched():
            if parts in self._paths or parts in self._ancestors:
                return True
            for depth in range(1, len(parts)):
                if parts[:depth] in self._paths:
                    return True
        return False


def to_ranges(indices: set[int]) -> list[list[int]]:
    """{0,1,2,5} -> [[0,2],[5,5]]: a checkpoint stays small when most steps are done."""
    ranges: list[list[int]] = []
    for index in sorted(indices):
        if ranges and ranges[-1][1] == index - 1:
            ranges[-1][1] = index
        else:
            ranges.append([index, index])
    return ranges


def from_ranges(ranges: list[list[int]]) -> list[int]:
    return [index for first, last in ranges for index in range(first, last + 1)]


def _open_append(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)


def _write_whole(path: str, data: bytes) -> None:
    """Write a file so that it exists whole or not at all (never through a planted link)."""
    tmp = path + ".tmp"
    fd = create_exclusive(tmp)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path))


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
