"""In-memory stand-ins behind the daemon's own interfaces (LedgerStore, ResultSink, AuditSink),
and a clock the tests move by hand. No cloud client is faked: the GCS store and the publisher
are covered by the emulator suites."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.api_core.exceptions import ServiceUnavailable

from fileops_daemon.service.delivery import Delivery
from fileops_daemon.service.ledger_store import LedgerStore, Stored
from fileops_daemon.service.outputs import AuditLog, audit_record

__all__ = ["Answer", "FaultyStore", "ManualClock", "MemoryAudit", "MemoryResults"]


class ManualClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Answer:
    result: dict[str, Any]
    extra: dict[str, str]
    data: bytes


class MemoryResults:
    """A ResultSink that keeps what it was given."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []

    def publish(
        self, result: dict[str, Any], extra: dict[str, str] | None = None, data: bytes = b""
    ) -> str:
        self.answers.append(Answer(result, dict(extra or {}), data))
        return str(len(self.answers))

    def of(self, plan_id: str) -> list[dict[str, Any]]:
        return [answer.result for answer in self.answers if answer.result["plan_id"] == plan_id]


class MemoryAudit:
    """An AuditSink with AuditLog's object names, records and write-once rule; ``down`` makes every
    write fail as a GCS outage would (after the retries)."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.down = False

    def location(self, result: dict[str, Any], delivery: Delivery) -> str:
        return f"memory://audit/{AuditLog.object_name(result, delivery)}"

    def write(
        self, result: dict[str, Any], delivery: Delivery, full: dict[str, Any] | None = None
    ) -> str:
        if self.down:
            raise ServiceUnavailable("the audit bucket is unavailable")
        name = AuditLog.object_name(result, delivery)
        self.records.setdefault(name, audit_record(result, delivery, full))
        return name


#: Says whether one store call fails: (operation "read" | "write", object name) -> fail?
Breaks = Callable[[str, str], bool]


@dataclass
class FaultyStore:
    """A LedgerStore passing to ``inner``, except where ``breaks`` says the call fails (with
    what the GCS store raises once its retries are spent), and with ``before_write`` called
    ahead of every write (to let another writer in at exactly that moment)."""

    inner: LedgerStore
    breaks: Breaks = lambda operation, name: False
    before_write: Callable[[str, int | None], None] = lambda name, generation: None
    writes: list[str] = field(default_factory=list)

    def read(self, name: str) -> Stored | None:
        if self.breaks("read", name):
            raise ServiceUnavailable(f"reading {name}: the store is unavailable")
        return self.inner.read(name)

    def write(
        self, name: str, data: bytes, *, content_type: str, if_generation_match: int | None
    ) -> int:
        if self.breaks("write", name):
            raise ServiceUnavailable(f"writing {name}: the store is unavailable")
        self.before_write(name, if_generation_match)
        generation = self.inner.write(
            name, data, content_type=content_type, if_generation_match=if_generation_match
        )
        self.writes.append(name)
        return generation
