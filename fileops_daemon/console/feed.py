"""Recent results as they arrive: what "ops watch the results subscription" means for a person.

The console keeps its own subscription on the results topic (self-expiring, like ``fileops
watch``'s, and deleted when the console stops) and the last ``keep`` results in memory, each
with a sequence number so a page can ask for what is newer than what it shows. Results
published while no console ran are in the ledger and the audit bucket, not here.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

import structlog

from fileops_daemon.client.api import ClientConfig, connect_retry, result_of
from fileops_daemon.client.api import self_expiring_subscription as expiring

__all__ = ["Arrived", "ResultFeed"]

log = structlog.get_logger("fileops.console")


@dataclass(frozen=True)
class Arrived:
    seq: int
    at: float  # when the console received it
    result: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.result.get("status", ""))

    @property
    def case_name(self) -> str:
        return str(self.result.get("case_name", ""))

    @property
    def plan_id(self) -> str:
        return str(self.result.get("plan_id", ""))


class ResultFeed:
    def __init__(self, config: ClientConfig, keep: int = 2000) -> None:
        self.config = config
        self.subscription = config.subscription_path(f"fileops-console-{uuid.uuid4().hex[:12]}")
        self._items: deque[Arrived] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._seq = 0
        self._subscriber: Any = None
        self._future: Any = None

    def start(self) -> ResultFeed:
        from google.cloud import pubsub_v1

        subscriber = pubsub_v1.SubscriberClient()
        subscriber.create_subscription(
            request={
                "name": self.subscription,
                "topic": self.config.topic_path(self.config.results_topic),
                "ack_deadline_seconds": 10,
                **expiring(),
            },
            retry=connect_retry(self.config.connect_timeout),
            timeout=self.config.connect_timeout,
        )
        self._subscriber = subscriber
        self._future = subscriber.subscribe(self.subscription, callback=self._on_message)
        return self

    def _on_message(self, message: Any) -> None:
        message.ack()
        result = result_of(message.data)
        if result is None or not isinstance(result.get("status"), str):
            return
        self.add(result)

    def add(self, result: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            self._items.append(Arrived(self._seq, time.time(), result))

    @property
    def last_seq(self) -> int:
        return self._seq

    def recent(
        self, *, case: str = "", status: str = "", after: int = 0, limit: int = 200
    ) -> list[Arrived]:
        """Newest first, filtered by exact case and status (empty: any)."""
        with self._lock:
            items = list(self._items)
        found: list[Arrived] = []
        for item in reversed(items):
            if item.seq <= after:
                break
            if (case and item.case_name != case) or (status and item.status != status):
                continue
            found.append(item)
            if len(found) >= limit:
                break
        return found

    def stop(self) -> None:
        if self._future is not None:
            self._future.cancel()
            with contextlib.suppress(Exception):
                self._future.result(timeout=10)
        if self._subscriber is not None:
            with contextlib.suppress(Exception):
                self._subscriber.delete_subscription(
                    subscription=self.subscription, timeout=self.config.connect_timeout
                )
            self._subscriber.close()
            self._subscriber = None
