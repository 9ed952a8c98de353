"""Where every plan's outcome goes: the results topic and the audit bucket."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from datetime import UTC, datetime
from typing import Any, Protocol

from google.api_core.exceptions import PreconditionFailed
from google.cloud import pubsub_v1, storage

from fileops_daemon.contract import attributes as attr
from fileops_daemon.contract.approval import Decision
from fileops_daemon.contract.results import encode_result
from fileops_daemon.service.cloud import CloudRetry
from fileops_daemon.service.decisions import timestamp
from fileops_daemon.service.delivery import DECISION, PLAN_DOCUMENT, Delivery

__all__ = ["AuditLog", "AuditSink", "ResultPublisher", "ResultSink", "audit_record"]

#: How much of an undecodable message the audit record keeps, for forensics.
_RAW_KEEP_BYTES = 64 << 10
#: What may appear in an audit object name: plan.schema.json's plan_id pattern.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")


class ResultSink(Protocol):
    """Where the handler sends each answer (ResultPublisher in the daemon)."""

    def publish(
        self, result: dict[str, Any], extra: dict[str, str] | None = None, data: bytes = b""
    ) -> str: ...


class AuditSink(Protocol):
    """Where the handler keeps the record of each answer (AuditLog in the daemon)."""

    def location(self, result: dict[str, Any], delivery: Delivery) -> str: ...

    def write(
        self, result: dict[str, Any], delivery: Delivery, full: dict[str, Any] | None = None
    ) -> str: ...


class ResultPublisher:
    """Publishes result documents with the attributes ops filter on."""

    def __init__(
        self, publisher: pubsub_v1.PublisherClient, topic_path: str, retry: CloudRetry
    ) -> None:
        self.publisher = publisher
        self.topic_path = topic_path
        self.retry = retry

    def publish(
        self, result: dict[str, Any], extra: dict[str, str] | None = None, data: bytes = b""
    ) -> str:
        """Publish ``result`` (``data``: its encoding, when the caller has it already)."""
        data = data or encode_result(result)

        def send() -> str:
            attributes = {
                attr.PLAN_ID: result["plan_id"],
                attr.CASE_NAME: result["case_name"],
                attr.STATUS: result["status"],
                **(extra or {}),
            }
            if isinstance(result.get("in_reply_to"), str):
                attributes[attr.IN_REPLY_TO] = result["in_reply_to"]
            future = self.publisher.publish(self.topic_path, data, **attributes)
            message_id: str = future.result(timeout=60)
            return message_id

        return self.retry.call(send)


class AuditLog:
    """One object per plan message: ``<YYYY>/<MM>/<DD>/<plan_id>/<message_id>.json``, one line
    of JSON whose shape is ``schemas/audit.bigquery.json``."""

    def __init__(self, bucket: storage.Bucket, retry: CloudRetry) -> None:
        self.bucket = bucket
        self.retry = retry

    @staticmethod
    def object_name(result: dict[str, Any], delivery: Delivery) -> str:
        return AuditLog.name_for(result, delivery.message_id)

    @staticmethod
    def name_for(result: dict[str, Any], message_id: str) -> str:
        """Where the answer ``result`` to message ``message_id`` is audited."""
        day = datetime.fromisoformat(result["started_at"].replace("Z", "+00:00")).astimezone(UTC)
        # Both parts are daemon-checked names; anything else (a slash, a newline, 1,000+
        # bytes) never shapes an object name.
        plan = result["plan_id"] if _SAFE_NAME.fullmatch(result["plan_id"]) else "_unidentified"
        message = message_id if _SAFE_NAME.fullmatch(message_id) else "_message"
        return f"{day:%Y/%m/%d}/{plan}/{message}.json"

    def location(self, result: dict[str, Any], delivery: Delivery) -> str:
        """Where :meth:`write` keeps the record of this answer."""
        return f"gs://{self.bucket.name}/{self.object_name(result, delivery)}"

    def write(
        self, result: dict[str, Any], delivery: Delivery, full: dict[str, Any] | None = None
    ) -> str:
        """Write the record once; a redelivered message finds it there and leaves it.

        ``full``: the whole result when ``result`` is its shortened form (key full_result).
        """
        record = audit_record(result, delivery, full)
        name = self.object_name(result, delivery)
        blob = self.bucket.blob(name)
        # One line: the object is one row of BigQuery's NEWLINE_DELIMITED_JSON
        # (schemas/audit.bigquery.json; docs/audit.md). `jq .` indents it for people.
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        # if_generation_match=0: an earlier delivery of this message may have audited it.
        with contextlib.suppress(PreconditionFailed):
            self.retry.call(
                blob.upload_from_string,
                line.encode("utf-8"),
                content_type="application/json",
                if_generation_match=0,
                retry=None,
            )
        return name


def audit_record(
    result: dict[str, Any], delivery: Delivery, full: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The audit record of one answer: the result, the message it answers, the plan (as
    stored, for an operator's decision) and who decided, or the raw bytes of a refusal."""
    record: dict[str, Any] = {
        "result": result,
        "message": {
            "id": delivery.message_id,
            "attributes": delivery.attributes,
            "delivery_attempt": delivery.delivery_attempt,
            "publish_time": delivery.publish_time.isoformat() if delivery.publish_time else None,
        },
    }
    stored = delivery.extra.get(PLAN_DOCUMENT)
    decision = delivery.extra.get(DECISION)
    if isinstance(decision, Decision):  # settled by an operator: who decided what, when
        record["decision"] = {
            "decision": decision.decision,
            "by": decision.by,
            "at": timestamp(decision.at),
            "reason": decision.reason,
            "changes_digest": decision.changes_digest,
        }
    if isinstance(stored, dict) or result["status"] != "rejected" or result["operations"]:
        # The plan was parsed: keep it whole, with who asked for it and why. A wake-up's
        # answer keeps the plan as stored when it waited, never the wake-up message.
        document: Any = stored
        if not isinstance(stored, dict):
            try:
                document = json.loads(delivery.data)
            except (ValueError, RecursionError):
                document = None
        if isinstance(document, dict):
            record["plan"] = document
            for name in ("requested_by", "reason"):
                if isinstance(document.get(name), str):
                    record[name] = document[name]
    if result["status"] == "rejected" and not result["operations"] and stored is None:
        raw = delivery.data[:_RAW_KEEP_BYTES]
        record["message"]["data_base64"] = base64.b64encode(raw).decode("ascii")
        record["message"]["data_bytes"] = len(delivery.data)
    if full is not None:
        record["full_result"] = full
    return record
