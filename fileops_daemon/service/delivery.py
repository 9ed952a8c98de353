"""One received plan message: what the consumer uses of it, and what the handler sees."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

__all__ = [
    "APPROVED_DIGEST",
    "DECISION",
    "PLAN_DOCUMENT",
    "REPLY_TO",
    "Delivery",
    "ReceivedMessage",
]

#: Delivery.extra keys the daemon sets itself (never read from the wire): the client to answer
#: instead of the message's own; the digest of the plan a verified decision approved; the plan
#: document an answer is about when the message is a wake-up (for the audit record); and the
#: verified decision (a contract.approval.Decision) the answer follows from.
REPLY_TO = "fileops.reply_to"
APPROVED_DIGEST = "fileops.approved_digest"
PLAN_DOCUMENT = "fileops.plan_document"
DECISION = "fileops.decision"


class ReceivedMessage(Protocol):
    """A pulled message as the consumer uses it: read, then settled once. The Pub/Sub client's
    ``Message`` is one; unit tests settle their own."""

    @property
    def data(self) -> bytes: ...

    @property
    def attributes(self) -> Mapping[str, str]: ...

    @property
    def message_id(self) -> str: ...

    @property
    def delivery_attempt(self) -> int | None: ...

    @property
    def publish_time(self) -> datetime | None: ...

    @property
    def ordering_key(self) -> str | None: ...

    def ack(self) -> None: ...

    def nack(self) -> None: ...


@dataclass(frozen=True)
class Delivery:
    """One received plan message, independent of the Pub/Sub client's message type."""

    data: bytes
    attributes: dict[str, str]
    message_id: str
    delivery_attempt: int = 1
    publish_time: datetime | None = None
    ordering_key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
