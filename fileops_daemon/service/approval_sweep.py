"""Wake-ups the daemon makes itself: for decisions whose wake-up it may never receive, and for
plans whose approval expired while nobody decided.

``fileops approve`` stores the decision, then publishes a wake-up. A wake-up published while
no daemon runs should reach the next one, but it may not: its publish can fail after the
decision was stored, and on Google's Pub/Sub emulator a streaming pull cancelled by the
previous daemon leaves the subscription's later streaming pulls without any message
(tests/emulators/README.md). So a daemon, a little after it starts, looks through the waiting
plans for decisions stored before it started and handles one wake-up of its own for each,
through the normal path (the case's turn, the decision's signature, the ledger). A wake-up
that does arrive as well is answered as a duplicate.

Expiry: every ``FILEOPS_APPROVAL_SWEEP`` (a minute), one daemon at a time (whoever writes
``sweeps/expiry.json`` first, generation-matched) makes a wake-up for each waiting plan past
its expiry, so its agent hears ``approval_expired`` without anyone running ``fileops pending``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from fileops_daemon.contract import attributes as attr
from fileops_daemon.contract.approval import wakeup_document
from fileops_daemon.contract.signing import SIGNATURE_ATTRIBUTE, sign_message
from fileops_daemon.service.ledger_store import GenerationMismatchError, LedgerStore

__all__ = ["SWEEP_AFTER_SECONDS", "LocalWakeUp", "SweepTurn", "local_wakeup"]

#: How long after its start a daemon looks for decisions without a wake-up: long enough for a
#: wake-up in the subscription's backlog to arrive first (then the plan no longer waits).
SWEEP_AFTER_SECONDS = 10.0

#: Who the daemon's own wake-ups say they come from.
SWEEPER = "fileops-daemon"


@dataclass(frozen=True)
class LocalWakeUp:
    """A wake-up the daemon made itself: a ReceivedMessage that no Pub/Sub delivered.
    Settling it calls ``settled(message, acked)``; a nacked one may be tried again."""

    data: bytes
    attributes: Mapping[str, str]
    message_id: str
    delivery_attempt: int
    settled: Callable[[LocalWakeUp, bool], None]
    publish_time: datetime | None = None
    ordering_key: str | None = ""  # none: a busy case holds it instead of nacking it

    def ack(self) -> None:
        self.settled(self, True)

    def nack(self) -> None:
        self.settled(self, False)

    def again(self) -> LocalWakeUp:
        """The next attempt after a nack."""
        return replace(self, delivery_attempt=self.delivery_attempt + 1)


def local_wakeup(
    plan_id: str,
    case_name: str,
    signing_key: bytes | None,
    settled: Callable[[LocalWakeUp, bool], None],
) -> LocalWakeUp:
    """The wake-up ``fileops approve`` would have published for ``plan_id``, signed with the
    daemon's own plan key when it checks signatures."""
    data = json.dumps(wakeup_document(plan_id, case_name, SWEEPER), sort_keys=True).encode()
    attributes = {attr.PLAN_ID: plan_id, attr.CASE_NAME: case_name, attr.DRY_RUN: "false"}
    if signing_key is not None:
        attributes[SIGNATURE_ATTRIBUTE] = sign_message(signing_key, data, attributes)
    return LocalWakeUp(data, attributes, f"sweep-{plan_id}", 1, settled)


class SweepTurn:
    """Whose turn it is to sweep: at most one daemon per period, whoever writes the turn object
    first once the last turn is a period old (a lost race is simply not our turn)."""

    NAME = "sweeps/expiry.json"

    def __init__(
        self, store: LedgerStore, worker_id: str, period: float, clock: Callable[[], float]
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.period = period
        self.clock = clock

    def take(self) -> bool:
        found = self.store.read(self.NAME)
        generation = 0
        if found is not None:
            generation = found.generation
            last = _last_turn(found.data)
            if last is not None and self.clock() - last < self.period * 0.9:
                return False
        document = {"owner": self.worker_id, "at": self.clock()}
        try:
            self.store.write(
                self.NAME,
                json.dumps(document).encode(),
                content_type="application/json",
                if_generation_match=generation,
            )
        except GenerationMismatchError:
            return False
        return True


def _last_turn(data: bytes) -> float | None:
    try:
        document: Any = json.loads(data)
        at = document.get("at")
    except (ValueError, AttributeError):
        return None
    return float(at) if isinstance(at, int | float) and not isinstance(at, bool) else None
