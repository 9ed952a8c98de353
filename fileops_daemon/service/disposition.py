"""How the consumer settles one message, and why: ACK once it is answered, NACK when a transient
fault kept the daemon from deciding, WAIT while an earlier plan of its case goes first. The
handler decides; the consumer settles, in one place."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["BLOCKING", "MAKE_WAY_SECONDS", "Disposition", "Reason", "Verdict"]


class Verdict(enum.StrEnum):
    ACK = "ack"  # answered: result published and audited
    NACK = "nack"  # not decided; Pub/Sub redelivers it
    WAIT = "wait"  # held, unsettled, until an earlier plan of its case is settled


class Reason(enum.StrEnum):
    """Why a message was not acked (a label of fileops_nacks / fileops_plan_waits)."""

    ANSWERED = "answered"
    TRANSIENT_FAULT = "transient_fault"  # GCS, Pub/Sub or the mount kept failing
    LEASE_LOST = "lease_lost"  # another daemon took the plan over
    HANDED_OVER = "handed_over"  # shutting down: paused, lease released
    ROLLBACK_INCOMPLETE = "rollback_incomplete"  # a failed apply could not be rolled back yet
    CASE_BUSY = "case_busy"  # another plan of the case is being handled here
    CASE_BLOCKED = "case_blocked"  # an earlier plan of the case was nacked and comes back
    CASE_HELD_ELSEWHERE = "case_held_elsewhere"  # another daemon has an unfinished plan of it
    PLAN_HELD_ELSEWHERE = "plan_held_elsewhere"  # another daemon is applying this very plan
    PLAN_BUSY_LOCALLY = "plan_busy_locally"  # a local `fileops apply` holds the case's lock
    SHUTTING_DOWN = "shutting_down"  # a held message is released on stop
    WAITED_TOO_LONG = "waited_too_long"  # held past the bound: back to Pub/Sub


@dataclass(frozen=True)
class Disposition:
    """How the consumer settles one message, and why. It settles it in one place."""

    verdict: Verdict
    reason: Reason
    #: WAIT: wake the message when this case's plan in this daemon is settled.
    case: str = ""
    #: WAIT: otherwise look again after this many seconds. NACK: nack after this delay (a
    #: plan that must make way is not bounced straight back: pstest redelivers at once).
    after: float = 0.0

    @classmethod
    def ack(cls) -> Disposition:
        return cls(Verdict.ACK, Reason.ANSWERED)

    @classmethod
    def nack(cls, reason: Reason, after: float = 0.0) -> Disposition:
        return cls(Verdict.NACK, reason, after=after)

    @classmethod
    def wait(cls, reason: Reason, *, case: str = "", after: float = 0.0) -> Disposition:
        return cls(Verdict.WAIT, reason, case=case, after=after)


#: Nacks after which the plan may have changed the tree, or recorded its result unanswered:
#: the case then waits for this plan's redelivery.
BLOCKING = frozenset(
    {
        Reason.TRANSIENT_FAULT,
        Reason.LEASE_LOST,
        Reason.HANDED_OVER,
        Reason.ROLLBACK_INCOMPLETE,
    }
)

#: How long a message is kept before it is nacked: a plan that must make way for a nacked one,
#: or one that met a transient fault.
MAKE_WAY_SECONDS = 1.0
