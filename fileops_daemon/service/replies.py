"""Which message a result answers, and the answer of last resort for a plan that kept waiting
on another daemon: so a sender hears its own answer, and no plan is dead-lettered unanswered."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fileops_daemon.contract.errors import ErrorCode, PlanError, shorten
from fileops_daemon.contract.plan import Plan
from fileops_daemon.core.execute import plan_rejection
from fileops_daemon.service.delivery import Delivery

__all__ = ["IN_REPLY_TO", "answered_message", "busy_answer", "last_attempt"]

#: Delivery.extra key (set by the daemon itself, never read from the wire): the plan message a
#: result answers when it is not the delivered one (a plan applied on an operator's wake-up).
IN_REPLY_TO = "fileops.in_reply_to"


def answered_message(delivery: Delivery) -> str:
    """The Pub/Sub message id a result for ``delivery`` names in ``in_reply_to``."""
    named = delivery.extra.get(IN_REPLY_TO)
    return named if isinstance(named, str) and named else delivery.message_id


def last_attempt(delivery: Delivery, max_delivery_attempts: int) -> bool:
    """Whether a nack now would send the message to the dead-letter topic, unanswered."""
    return delivery.delivery_attempt >= max_delivery_attempts


def busy_answer(
    plan: Plan, started: datetime, attempt: int, *, holder: str, owner: str
) -> dict[str, Any]:
    """``rejected`` (plan_busy, nothing touched) for a plan whose case, or itself, another daemon
    held through every delivery but the last: an answer and an audit record, never a silent
    dead letter. The plan_id stays free (nothing is recorded): send the plan again later."""
    error = PlanError(
        ErrorCode.PLAN_BUSY,
        f"case {shorten(plan.case_name, 200)!r} stayed busy with plan {shorten(holder, 200)!r} "
        f"on {shorten(owner, 200)} through {attempt} deliveries; nothing was changed and "
        "nothing recorded: send this plan again (same plan_id) when that one is done",
    )
    return plan_rejection(plan, error, started, attempt)
