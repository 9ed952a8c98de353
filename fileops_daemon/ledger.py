"""The idempotency ledger: one GCS object per plan_id, changed only with a generation match.

``plans/<plan_id>.json`` in the state bucket holds the plan's digest, its owner and lease, its
progress and, once finished, its result. Creating it with ``ifGenerationMatch=0`` is the claim;
every later write names the generation it read, so two daemons can never both believe they own
a plan (a write with a stale generation fails with 412 and the writer stops: the lease is lost).
``journals/<plan_id>.jsonl`` holds the plan's journal header, so a daemon on another machine
that takes over an expired lease can resume from the last checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from google.api_core.exceptions import NotFound, PreconditionFailed
from google.cloud import storage

from fileops_daemon.cloud import CloudRetry

__all__ = [
    "Claimed",
    "Completed",
    "Conflict",
    "Held",
    "LeaseLostError",
    "Ledger",
    "LedgerCorruptError",
    "Record",
]


class LeaseLostError(RuntimeError):
    """Another daemon took this plan over (our generation is stale): stop touching it."""


class LedgerCorruptError(RuntimeError):
    """A ledger object that is not a ledger record; needs an operator."""


@dataclass(frozen=True)
class Record:
    plan_id: str
    digest: str
    case_name: str
    state: str  # claimed | done
    owner: str
    token: str  # unique per write by a claimant: recognises our own write after a lost reply
    lease_expires_at: float
    attempts: int = 1
    takeovers: int = 0
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    undo: dict[str, Any] | None = None  # the inverse plan of an applied plan
    updated_at: float = 0.0
    generation: int = 0  # of the GCS object this was read from or written as; not stored

    def to_json(self) -> bytes:
        document = asdict(self)
        del document["generation"]
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, generation: int) -> Record:
        try:
            document = json.loads(data)
            return cls(**document, generation=generation)
        except (ValueError, TypeError) as exc:
            raise LedgerCorruptError(f"ledger record is not valid: {exc}") from exc


@dataclass(frozen=True)
class Claimed:
    record: Record
    takeover: bool = False
    previous_owner: str | None = None  # on a takeover: the daemon whose lease expired


@dataclass(frozen=True)
class Completed:
    record: Record


@dataclass(frozen=True)
class Conflict:
    record: Record


@dataclass(frozen=True)
class Held:
    record: Record


ClaimOutcome = Claimed | Completed | Conflict | Held


class Ledger:
    def __init__(
        self,
        bucket: storage.Bucket,
        worker_id: str,
        lease_seconds: float,
        retry: CloudRetry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bucket = bucket
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.retry = retry
        self.clock = clock

    # -- storage --------------------------------------------------------------------------------

    @staticmethod
    def record_name(plan_id: str) -> str:
        return f"plans/{plan_id}.json"

    @staticmethod
    def journal_name(plan_id: str) -> str:
        return f"journals/{plan_id}.jsonl"

    def read(self, plan_id: str) -> Record | None:
        """The current record (with its generation), or None."""
        name = self.record_name(plan_id)
        for _ in range(5):
            blob = self.retry.call(self.bucket.get_blob, name, retry=None)
            if blob is None:
                return None
            try:
                data = self.retry.call(
                    blob.download_as_bytes, if_generation_match=blob.generation, retry=None
                )
            except (PreconditionFailed, NotFound):
                continue  # rewritten between the two calls: read again
            return Record.from_json(data, int(blob.generation))
        raise LeaseLostError(f"ledger record of {plan_id} keeps changing")

    def _write(self, record: Record, if_generation_match: int) -> Record:
        """Write ``record`` if the object is still at ``if_generation_match``; 412 propagates."""
        record = replace(record, updated_at=self.clock())
        blob = self.bucket.blob(self.record_name(record.plan_id))
        try:
            self.retry.call(
                blob.upload_from_string,
                record.to_json(),
                content_type="application/json",
                if_generation_match=if_generation_match,
                retry=None,
            )
        except PreconditionFailed:
            # A retried upload may have landed the first time: then the object holds our token.
            current = self.read(record.plan_id)
            if current is not None and current.token == record.token:
                return current
            raise
        return replace(record, generation=int(blob.generation))

    # -- transitions ----------------------------------------------------------------------------

    def claim(self, plan_id: str, digest: str, case_name: str) -> ClaimOutcome:
        fresh = Record(
            plan_id=plan_id,
            digest=digest,
            case_name=case_name,
            state="claimed",
            owner=self.worker_id,
            token=uuid.uuid4().hex,
            lease_expires_at=self.clock() + self.lease_seconds,
        )
        for _ in range(5):
            try:
                return Claimed(self._write(fresh, if_generation_match=0))
            except PreconditionFailed:
                pass
            current = self.read(plan_id)
            if current is None:
                continue  # deleted meanwhile: try creating again
            if current.digest != digest:
                return Conflict(current)
            if current.state == "done":
                return Completed(current)
            if current.lease_expires_at > self.clock():
                return Held(current)
            taken = replace(
                current,
                owner=self.worker_id,
                token=uuid.uuid4().hex,
                lease_expires_at=self.clock() + self.lease_seconds,
                attempts=current.attempts + 1,
                takeovers=current.takeovers + 1,
            )
            try:
                written = self._write(taken, current.generation)
                return Claimed(written, takeover=True, previous_owner=current.owner)
            except PreconditionFailed:
                continue  # someone else took it first; look again
        current = self.read(plan_id)
        assert current is not None
        return Held(current)

    def renew(self, record: Record, progress: dict[str, Any] | None = None) -> Record:
        """Extend the lease (and record progress); LeaseLostError if someone took over."""
        renewed = replace(
            record,
            token=uuid.uuid4().hex,
            lease_expires_at=self.clock() + self.lease_seconds,
            progress=progress if progress is not None else record.progress,
        )
        try:
            return self._write(renewed, record.generation)
        except PreconditionFailed as exc:
            raise LeaseLostError(f"plan {record.plan_id} was taken over by another daemon") from exc

    def release(self, record: Record) -> None:
        """End our lease now (the plan stays claimed, so the next daemon takes it over at
        once); quietly nothing if someone already has."""
        released = replace(record, token=uuid.uuid4().hex, lease_expires_at=0.0)
        with contextlib.suppress(PreconditionFailed):
            self._write(released, record.generation)

    def complete(
        self, record: Record, result: dict[str, Any], undo: dict[str, Any] | None = None
    ) -> Record:
        done = replace(
            record,
            state="done",
            result=result,
            undo=undo,
            token=uuid.uuid4().hex,
            lease_expires_at=0.0,
        )
        try:
            return self._write(done, record.generation)
        except PreconditionFailed as exc:
            raise LeaseLostError(f"plan {record.plan_id} was taken over by another daemon") from exc

    # -- the journal header, for a takeover on another machine ----------------------------------

    def save_journal(self, plan_id: str, header: bytes) -> None:
        blob = self.bucket.blob(self.journal_name(plan_id))
        self.retry.call(
            blob.upload_from_string, header, content_type="application/jsonl", retry=None
        )

    def load_journal(self, plan_id: str) -> bytes | None:
        blob = self.bucket.blob(self.journal_name(plan_id))
        try:
            data: bytes = self.retry.call(blob.download_as_bytes, retry=None)
        except NotFound:
            return None
        return data
