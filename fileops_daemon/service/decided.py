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

__all__ = ["ruled_delivery", "to_submitter"]


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


def to_submitter(record: Record, delivery: Delivery) -> Delivery:
    """A resend of a waiting plan: answered to the client that submitted it (the resend's own
    message id names it), and audited with the stored plan."""
    extra = {
        **delivery.extra,
        REPLY_TO: ApprovalDesk.client_of(record),
        PLAN_DOCUMENT: ApprovalDesk.plan_of(record),
    }
    return dataclasses.replace(delivery, extra=extra)
