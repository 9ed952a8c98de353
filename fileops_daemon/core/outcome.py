"""How an apply (or a dry run) ended: the result document, and what a caller acts on.

The result document is what the plan's sender reads; ``RunEnd`` is what the daemon and the
CLI decide on (answer, wait for a lock, try a rollback again later) without reading it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from fileops_daemon.contract.results import ResultStatus

__all__ = ["ApplyOutcome", "ApplyPaused", "RunEnd"]


class ApplyPaused(Exception):  # noqa: N818 - a request honoured, not an error
    """The apply stopped between steps because it was asked to; the same call resumes it."""


class RunEnd(StrEnum):
    """How a run ended. Only BUSY and ROLLBACK_INCOMPLETE call for another try."""

    PLANNED = "planned"  # a dry run: simulated, nothing changed
    APPLIED = "applied"  # every step ran; result and inverse stored
    REJECTED = "rejected"  # refused as a whole; nothing was touched
    BUSY = "busy"  # another process holds the plan's or the case's lock; nothing was touched
    ROLLED_BACK = "rolled_back"  # a step failed; the rollback went as far as it ever will
    #: A step failed and the rollback met a passing fault (or the case folder could not be
    #: opened): nothing is stored, and the same call carries on from the journal.
    ROLLBACK_INCOMPLETE = "rollback_incomplete"
    #: The admission hook held the plan before its first change (it waits for a person).
    HELD = "held"

    @property
    def status(self) -> ResultStatus:
        """The status its result document carries."""
        return _STATUS[self]


_STATUS = {
    RunEnd.PLANNED: ResultStatus.PLANNED,
    RunEnd.APPLIED: ResultStatus.APPLIED,
    RunEnd.REJECTED: ResultStatus.REJECTED,
    RunEnd.BUSY: ResultStatus.REJECTED,
    RunEnd.ROLLED_BACK: ResultStatus.FAILED,
    RunEnd.ROLLBACK_INCOMPLETE: ResultStatus.FAILED,
    RunEnd.HELD: ResultStatus.AWAITING_APPROVAL,
}


@dataclass(frozen=True)
class ApplyOutcome:
    """What ``apply_plan`` and ``dry_run`` return."""

    end: RunEnd
    #: The result document, as published (and, once final, stored).
    result: dict[str, Any]
    #: The inverse plan document of an applied plan (what an undo applies); else None.
    undo: dict[str, Any] | None = None
    #: Steps whose change is in the tree now (all of them once applied).
    steps_done: int = 0
    #: What a failed apply could not roll back (also in ``result["remaining"]``).
    remaining: tuple[str, ...] = field(default=())
    #: ``result`` as stored (compact UTF-8 JSON), when it was stored by this run: printing
    #: it need not encode a 10,000-operation document a second time.
    encoded: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def status(self) -> ResultStatus:
        return self.end.status

    @classmethod
    def of_stored(cls, result: dict[str, Any], undo: dict[str, Any] | None) -> ApplyOutcome:
        """A result this machine stored when the plan ended (a rerun returns it): applied,
        or failed and rolled back. It was read back from disk, so nothing in it is trusted."""
        status = result.get("status")
        if status == ResultStatus.APPLIED:
            steps = result.get("steps", 0)
            return cls(RunEnd.APPLIED, result, undo, steps if type(steps) is int else 0)
        if status == ResultStatus.FAILED:
            remaining = result.get("remaining", [])
            left = tuple(map(str, remaining)) if isinstance(remaining, list) else ()
            return cls(RunEnd.ROLLED_BACK, result, remaining=left)
        return cls(RunEnd.REJECTED, result)
