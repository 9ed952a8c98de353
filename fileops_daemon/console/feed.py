"""Recent results as they arrive: what "ops watch the results subscription" means for a person.

The console keeps its own subscription on the results topic (self-expiring, like ``fileops
watch``'s, and deleted when the console stops) and the last ``keep`` results in memory, each
with a sequence number so a page can ask for what is newer than what it shows. What was
answered before it started comes from the audit bucket (``history.py``): the feed subscribes
first, reads the newest audited results, and shows them before what arrived meanwhile (one of
each: a result both audited and delivered is shown once).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from fileops_daemon.client.api import ClientConfig, connect_retry, result_of
from fileops_daemon.client.api import self_expiring_subscription as expiring
from fileops_daemon.console.history import Audited

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
        self._early: list[dict[str, Any]] | None = None  # arrived while the past is read
        self._audited: set[str] = set()  # identities of the results read from the audit

    def start(self, past: Callable[[], list[Audited]] | None = None) -> ResultFeed:
        """Subscribe, then (``past``) read what was answered before, in a thread of its own:
        the pages show nothing until it is done, then the past first."""
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
        if past is not None:
            self._early = []
        self._future = subscriber.subscribe(self.subscription, callback=self._on_message)
        if past is not None:
            threading.Thread(
                target=self._read_past, args=(past,), name="console-backfill", daemon=True
            ).start()
        return self

    def _read_past(self, past: Callable[[], list[Audited]]) -> None:
        try:
            audited = past()
        except Exception as exc:  # the page is a view: live results still come
            log.warning("console.results_backfill_failed", error=str(exc)[:300])
            audited = []
        self.settle(audited)

    def settle(self, audited: list[Audited]) -> None:
        """Show ``audited`` (oldest first), then what arrived while it was read. A result
        audited before the listing may also be delivered later (the stream can start after
        the listing): the audited ones are remembered, so each shows once."""
        with self._lock:
            early, self._early = self._early or [], None
            self._audited = {_identity(item.result) for item in audited}
            for item in audited:
                self._append(item.result, item.at)
            for result in early:
                self._add_unless_audited(result)

    def _on_message(self, message: Any) -> None:
        message.ack()
        result = result_of(message.data)
        if result is None or not isinstance(result.get("status"), str):
            return
        self.add(result)

    def add(self, result: dict[str, Any]) -> None:
        with self._lock:
            if self._early is not None:
                self._early.append(result)
            else:
                self._add_unless_audited(result)

    def _add_unless_audited(self, result: dict[str, Any]) -> None:
        identity = _identity(result)
        if identity in self._audited:
            self._audited.discard(identity)  # shown already, from the audit bucket
            return
        self._append(result, time.time())

    def _append(self, result: dict[str, Any], at: float) -> None:
        self._seq += 1
        self._items.append(Arrived(self._seq, at, result))

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


def _identity(result: dict[str, Any]) -> str:
    canonical = json.dumps(result, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
