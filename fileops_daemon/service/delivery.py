"""One received plan message, as the handler sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Delivery"]


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
