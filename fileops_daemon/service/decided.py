"""Where the answers of a plan that waited for a person go: to the agent that sent it (its
``client_id``), naming the agent's own plan message (``in_reply_to``), and audited with the plan
as it was stored when it waited and the decision that settled it, never the wake-up message
an operator's command (or anyone) published."""

from __future__ import annotations

import dataclasses

from fileops_daemon.service.approval import Answer, ApprovalDesk, Proceed
from fileops_daemon.service.delivery import (
    APPROVED_DIGEST,
    DECISION,
    PLAN_DOCUMENT,
    REPLY_TO,
    Delivery,
)
from fileops_daemon.service.ledger import Record
from fileops_daemon.service.replies import IN_REPLY_TO

__all__ = ["ruled_delivery", "with_stored_plan"]


def ruled_delivery(ruling: Answer | Proceed, delivery: Delivery) -> Delivery:
    """The wake-up's delivery, routed and audited as the decided plan's."""
    extra = {
        **delivery.extra,
        REPLY_TO: ruling.client_id,
        DECISION: ruling.decision,
        IN_REPLY_TO: ruling.message_id,
    }
    if isinstance(ruling, Answer):
        extra[PLAN_DOCUMENT] = ruling.plan
    else:
        extra |= {PLAN_DOCUMENT: dict(ruling.plan.document), APPROVED_DIGEST: ruling.plan.digest}
    return dataclasses.replace(delivery, extra=extra)


def with_stored_plan(record: Record, delivery: Delivery) -> Delivery:
    """A resend of a waiting plan: answered like any message, to its own sender (its
    ``client_id``, its message id; an agent that restarted under a new ``client_id`` hears it
    too), and audited with the plan as stored when it began to wait."""
    extra = {**delivery.extra, PLAN_DOCUMENT: ApprovalDesk.plan_of(record)}
    return dataclasses.replace(delivery, extra=extra)
