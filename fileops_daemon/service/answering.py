"""Answering one message: audit and publish its result, then (and only then) it may be acked.

Who hears the answer: the plan's sender, by the ``client_id`` of a message that was accepted
(and, with signing on, whose v2 signature covers it), or the sender of the plan an operator
decided on. A message that was not accepted is answered under a name the daemon makes up,
unrouted: its attributes are not trusted, so a sender cannot put words under another plan's id
or in another agent's inbox.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import structlog

from fileops_daemon.contract import attributes as attr
from fileops_daemon.contract.errors import PlanError, shorten
from fileops_daemon.contract.results import answering, bounded, encode_result, refusal_result
from fileops_daemon.contract.signing import covers_attributes
from fileops_daemon.service.delivery import REPLY_TO, Delivery
from fileops_daemon.service.metrics import Metrics
from fileops_daemon.service.outputs import AuditSink, ResultSink
from fileops_daemon.service.replies import answered_message

__all__ = ["Answerer", "UnauditedAnswers", "placeholder_plan_id", "reply_attributes"]

log = structlog.get_logger("fileops.handler")


class Answerer:
    def __init__(
        self,
        results: ResultSink,
        audit: AuditSink,
        metrics: Metrics,
        signing_keys: tuple[bytes, ...],
        background: ThreadPoolExecutor,
    ) -> None:
        self.results = results
        self.audit = audit
        self.metrics = metrics
        self.signing_keys = signing_keys
        self.background = background
        self.unaudited = UnauditedAnswers()

    def refuse(self, delivery: Delivery, error: PlanError, started: datetime, bound: Any) -> None:
        """Answer a message that was not accepted, unrouted, under the daemon's own name."""
        result = refusal_result(
            {"plan_id": placeholder_plan_id(delivery.message_id)},
            error,
            started,
            attempt=delivery.delivery_attempt,
        )
        bound.bind(plan_id=result["plan_id"], case_name=result["case_name"]).warning(
            "plan.rejected",
            code=error.code.value,
            error=result["errors"][0]["message"],
            claimed_plan_id=shorten(delivery.attributes.get(attr.PLAN_ID, ""), 200),
        )
        self.answer(result, delivery, routed=False)

    def answer(self, result: dict[str, Any], delivery: Delivery, *, routed: bool = True) -> None:
        """Audit and publish, log; an exception means the message is not done (nacked)."""
        result = answering(result, answered_message(delivery))  # whose answer it is
        full = result  # a huge one is published shortened; the audit record keeps it whole
        data = encode_result(full)
        result = bounded(full, full_result=self.audit.location(full, delivery), size=len(data))
        # An agent's client tags its plans; the tag routes the result to its subscription.
        reply = reply_attributes(delivery, self.signing_keys) if routed else {}
        if routed and REPLY_TO in delivery.extra:  # a decided plan: answer its submitter
            client = delivery.extra[REPLY_TO]
            reply = {attr.CLIENT_ID: client} if client else {}
        earlier = self.unaudited.take(delivery.message_id)
        if earlier is not None:
            # An earlier delivery of this message published this answer, then failed to audit
            # it: audit that very answer now, and publish nothing more.
            result, full = earlier, earlier
            try:
                self.audit.write(result, delivery, None)
            except Exception:
                self.unaudited.put(delivery.message_id, result)
                raise
        elif result is not full:
            # The published result points at the audit record: that record exists first.
            data = encode_result(result)
            self.audit.write(result, delivery, full)
            self.results.publish(result, reply, data)
        else:
            # The audit record is written while the result is published, not before it: the
            # agent does not wait for it. It is never lost: the message is acked only once
            # both are done. If the audit write fails, the exception nacks the message, and
            # the answer is kept so that its redelivery here audits it without publishing it
            # again (redelivered to another daemon, it is answered again from the ledger, the
            # same recorded result, as after any crash between publish and ack).
            audited = self.background.submit(self.audit.write, result, delivery, None)
            published = False
            try:
                self.results.publish(result, reply, data)
                published = True
            finally:
                try:
                    audited.result()
                except Exception:
                    if published:
                        self.unaudited.put(delivery.message_id, result)
                    raise
        self.metrics.plans.labels(result["status"], str(result["dry_run"]).lower()).inc()
        log.info(
            "plan.answered",
            plan_id=result["plan_id"],
            case_name=result["case_name"],
            status=result["status"],
            dry_run=result["dry_run"],
            changes=len(full["changes"]),
            errors=[error["code"] for error in result["errors"]],
            message_id=delivery.message_id,
        )


class UnauditedAnswers:
    """Answers published whose audit write then failed, by message id, until the message's
    redelivery audits them (the oldest are forgotten past a bound: such a message is answered
    again, the same recorded result, as after a crash)."""

    LIMIT = 1024

    def __init__(self) -> None:
        self._answers: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, message_id: str, result: dict[str, Any]) -> None:
        with self._lock:
            self._answers[message_id] = result
            while len(self._answers) > self.LIMIT:
                self._answers.popitem(last=False)

    def take(self, message_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._answers.pop(message_id, None)


def placeholder_plan_id(message_id: str) -> str:
    """The daemon's own name for a message it could not accept (it matches the plan_id
    pattern, so it is safe in results, attributes and object names)."""
    return "unidentified-" + (_UNSAFE_ID.sub("_", message_id)[:180] or "_")


_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._:-]")
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def reply_attributes(delivery: Delivery, keys: tuple[bytes, ...]) -> dict[str, str]:
    """Routing for an accepted (so, with signing on, verified) plan's result: its client_id,
    when that may be trusted (no signing, or a v2 signature, which covers it) and is a plain
    name. A v1 signature covers the data only: a replay may carry any client_id."""
    client = delivery.attributes.get(attr.CLIENT_ID)
    if client is None or not _CLIENT_ID.fullmatch(client):
        return {}
    if keys and not covers_attributes(delivery.attributes):
        return {}
    return {attr.CLIENT_ID: client}
