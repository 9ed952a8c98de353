"""One plan per case at a time in this daemon, and a case waits for a plan it had to nack.

Pub/Sub keeps one ordering key's messages in order only while each is acked: after a nack the
client library hands the key's next message to the callback at once, although the nacked one
will come back later. A case's plans therefore pass through here before they touch anything:

- while a plan of the case is being handled, another plan of that case waits (two plans
  published without an ordering key, or under a differently spelled one, arrive together);
- a plan that was nacked unanswered (a transient fault, a hand-over) *blocks* its case: no
  later plan of the case starts here until that plan is answered here, or it will not come
  back (its last delivery attempt, or BLOCK_SECONDS without news). A done ledger record is
  not enough: the plan may be recorded and still unanswered (the audit or publish failed).

Pure bookkeeping under a lock: it never sleeps and never blocks a caller.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["BLOCK_SECONDS", "Admitted", "CaseSequencer", "WaitReason", "Waiting"]

#: How long a nacked plan blocks its case without being seen again. Pub/Sub redelivers a nack
#: after at most the subscription's maximum backoff (600 s as bootstrapped); past this the
#: message is taken for dead-lettered or gone, and the case moves on.
BLOCK_SECONDS = 900.0


class WaitReason(enum.StrEnum):
    CASE_BUSY = "case_busy"  # another plan of the case is being handled here
    CASE_BLOCKED = "case_blocked"  # an earlier plan of the case was nacked and will come back


@dataclass(frozen=True)
class Admitted:
    """The plan may run; call ``CaseSequencer.leave`` exactly once when it is settled."""

    case: str
    plan_id: str


@dataclass(frozen=True)
class Waiting:
    case: str
    reason: WaitReason
    by_plan: str  # the plan it waits for


@dataclass
class _Case:
    running: str | None = None
    blocker: str | None = None
    blocked_since: float = 0.0
    waiters: list[Callable[[], None]] = field(default_factory=list)

    def idle(self) -> bool:
        return self.running is None and self.blocker is None and not self.waiters


class CaseSequencer:
    def __init__(
        self,
        block_seconds: float = BLOCK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.block_seconds = block_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._cases: dict[str, _Case] = {}

    def enter(self, case: str, plan_id: str) -> Admitted | Waiting:
        """Admit ``plan_id`` of ``case`` unless the case is busy or blocked by another plan."""
        with self._lock:
            state = self._cases.setdefault(case, _Case())
            if state.running is not None:
                return Waiting(case, WaitReason.CASE_BUSY, state.running)
            if state.blocker is not None and state.blocker != plan_id:
                if self.clock() - state.blocked_since <= self.block_seconds:
                    return Waiting(case, WaitReason.CASE_BLOCKED, state.blocker)
                state.blocker = None  # not seen for too long: dead-lettered or gone
            state.running = plan_id
            return Admitted(case, plan_id)

    def leave(self, admitted: Admitted, *, blocks: bool) -> list[Callable[[], None]]:
        """The admitted plan is settled. ``blocks``: it was nacked after it may have begun and
        will be redelivered, so its case waits for it; otherwise (answered, or it only waited)
        it blocks nothing. Returns the waiters to wake (the caller runs them, outside any lock).
        """
        with self._lock:
            state = self._cases.setdefault(admitted.case, _Case())
            if state.running == admitted.plan_id:
                state.running = None
            if not blocks:
                if state.blocker == admitted.plan_id:
                    state.blocker = None
            elif state.blocker is None or state.blocker == admitted.plan_id:
                state.blocker = admitted.plan_id
                state.blocked_since = self.clock()
            return self._wake(admitted.case, state)

    def park(self, case: str, wake: Callable[[], None]) -> None:
        """Call ``wake`` once the case's running plan is settled (or it is unblocked)."""
        with self._lock:
            self._cases.setdefault(case, _Case()).waiters.append(wake)

    def unpark(self, case: str, wake: Callable[[], None]) -> bool:
        """Forget a parked waiter (it stopped waiting); False if it was already woken."""
        with self._lock:
            state = self._cases.get(case)
            if state is None or wake not in state.waiters:
                return False
            state.waiters.remove(wake)
            return True

    def _wake(self, case: str, state: _Case) -> list[Callable[[], None]]:
        woken, state.waiters = state.waiters, []
        if state.idle():
            del self._cases[case]
        return woken
