"""The idempotency ledger: one object per plan_id, changed only with a generation match.

``plans/<plan_id>.json`` in the state bucket holds the plan's digest, its owner and lease, its
progress and, once finished, its result. Creating it with ``ifGenerationMatch=0`` is the claim;
every later write names the generation it read, so two daemons can never both believe they own
a plan (a write with a stale generation fails with 412 and the writer stops: the lease is lost).
``journals/<plan_id>.jsonl`` holds the plan's journal header, so a daemon on another machine
that takes over an expired lease can resume from the last checkpoint.
``cases/<sha256 of the case>.json`` names the plan that may change a case now (the case lease):
a plan takes it before its claim, and it passes to the next plan only once that plan's record
is done (or the plan was abandoned for ``abandon_seconds``), so two daemons never interleave
one case's plans, whatever ordering key the publisher used.

The objects live in a LedgerStore (``ledger_store``): the state bucket in the daemon, memory in
unit tests.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from fileops_daemon.service.ledger_store import (
    GenerationMismatchError,
    LedgerStore,
    Stored,
    UnstableObjectError,
)
from fileops_daemon.service.sequencer import BLOCK_SECONDS

__all__ = [
    "AWAITING_APPROVAL",
    "CaseHeld",
    "CaseLease",
    "CaseSnapshot",
    "Claimed",
    "Completed",
    "Conflict",
    "Held",
    "LeaseLostError",
    "Ledger",
    "LedgerCorruptError",
    "Record",
    "RecordState",
]


class LeaseLostError(RuntimeError):
    """Another daemon took this plan over (our generation is stale): stop touching it."""


class LedgerCorruptError(RuntimeError):
    """A ledger object that is not a ledger record; needs an operator."""


class RecordState(enum.StrEnum):
    """A record's ``state``, stored as its value."""

    CLAIMED = "claimed"  # a daemon holds (or held) the lease; the plan is not finished
    DONE = "done"  # finished: ``result`` is its answer
    #: simulated and held for an operator's decision (service/approval.py); nothing applied
    AWAITING_APPROVAL = "awaiting_approval"


#: The state of a plan that waits for an operator (a name for service/approval.py and the CLI).
AWAITING_APPROVAL = RecordState.AWAITING_APPROVAL


@dataclass(frozen=True)
class Record:
    plan_id: str
    digest: str
    case_name: str
    state: RecordState
    owner: str
    token: str  # unique per write by a claimant: recognises our own write after a lost reply
    lease_expires_at: float
    attempts: int = 1
    takeovers: int = 0
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    undo: dict[str, Any] | None = None  # the inverse plan of an applied plan
    #: awaiting_approval (and after): the plan document, what was shown, who to answer
    approval: dict[str, Any] | None = None
    updated_at: float = 0.0
    generation: int = 0  # of the stored object this was read from or written as; not stored

    def to_json(self) -> bytes:
        document = asdict(self)
        del document["generation"]
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, generation: int) -> Record:
        try:
            document = json.loads(data)
            document["state"] = RecordState(document["state"])
            return cls(**document, generation=generation)
        except (ValueError, TypeError, KeyError) as exc:
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

#: A case lease as read: its document (None: there is none) and its generation (0: none).
CaseSnapshot = tuple[dict[str, Any] | None, int]


@dataclass(frozen=True)
class CaseLease:
    """This plan may change the case (until its record is done)."""

    case_name: str
    plan_id: str
    taken_from: str | None = None  # an abandoned plan this lease was taken from


@dataclass(frozen=True)
class CaseHeld:
    """Another plan of the case is unfinished: wait for it."""

    case_name: str
    plan_id: str
    owner: str
    why: str  # "applying" (a live lease) or "unfinished" (it will be redelivered)


class Ledger:
    def __init__(
        self,
        store: LedgerStore,
        worker_id: str,
        lease_seconds: float,
        clock: Callable[[], float] = time.time,
        abandon_seconds: float = BLOCK_SECONDS,
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.clock = clock
        #: How long an unfinished plan keeps its case without being seen: as long as a nacked
        #: plan blocks its case in a daemon (it may come back after Pub/Sub's maximum backoff).
        self.abandon_seconds = abandon_seconds

    # -- storage --------------------------------------------------------------------------------

    @staticmethod
    def record_name(plan_id: str) -> str:
        return f"plans/{plan_id}.json"

    @staticmethod
    def journal_name(plan_id: str) -> str:
        return f"journals/{plan_id}.jsonl"

    def read(self, plan_id: str) -> Record | None:
        """The current record (with its generation), or None."""
        found = self._read_object(self.record_name(plan_id))
        return None if found is None else Record.from_json(*found)

    def _read_object(self, name: str) -> Stored | None:
        """An object's bytes and the generation they belong to, or None if it is missing."""
        try:
            return self.store.read(name)
        except UnstableObjectError as exc:
            raise LeaseLostError(str(exc)) from exc

    def _write(self, record: Record, if_generation_match: int) -> Record:
        """Write ``record`` if the object is still at ``if_generation_match``;
        GenerationMismatchError propagates."""
        record = replace(record, updated_at=self.clock())
        try:
            generation = self.store.write(
                self.record_name(record.plan_id),
                record.to_json(),
                content_type="application/json",
                if_generation_match=if_generation_match,
            )
        except GenerationMismatchError:
            # A retried upload may have landed the first time: then the object holds our token.
            current = self.read(record.plan_id)
            if current is not None and current.token == record.token:
                return current
            raise
        return replace(record, generation=generation)

    # -- transitions ----------------------------------------------------------------------------

    def claim(
        self,
        plan_id: str,
        digest: str,
        case_name: str,
        known: Record | None = None,
        *,
        approved: bool = False,
    ) -> ClaimOutcome:
        """Claim ``plan_id``. ``known``: its record as the caller just read it, so a plan that
        has one is not first created in vain. A plan awaiting approval is claimed only once
        ``approved`` (otherwise it stays Held)."""
        fresh = Record(
            plan_id=plan_id,
            digest=digest,
            case_name=case_name,
            state=RecordState.CLAIMED,
            owner=self.worker_id,
            token=uuid.uuid4().hex,
            lease_expires_at=self.clock() + self.lease_seconds,
        )
        current = known
        for _ in range(5):
            if current is None:
                try:
                    return Claimed(self._write(fresh, if_generation_match=0))
                except GenerationMismatchError:
                    pass
                current = self.read(plan_id)
                if current is None:
                    continue  # deleted meanwhile: try creating again
            if current.digest != digest:
                return Conflict(current)
            if current.state is RecordState.DONE:
                return Completed(current)
            if current.lease_expires_at > self.clock():
                return Held(current)
            awaiting = current.state == AWAITING_APPROVAL
            if awaiting and not approved:
                return Held(current)
            # Our own lease, released when we nacked the plan: picking it up is no takeover.
            own = current.owner == self.worker_id and current.lease_expires_at == 0.0
            taken = replace(
                current,
                state=RecordState.CLAIMED,
                owner=self.worker_id,
                token=uuid.uuid4().hex,
                lease_expires_at=self.clock() + self.lease_seconds,
                attempts=current.attempts + 1,
                takeovers=current.takeovers + (not own and not awaiting),
            )
            try:
                written = self._write(taken, current.generation)
                if awaiting:  # an approved plan starts here: nobody's lease is taken over
                    return Claimed(written)
                return Claimed(written, takeover=not own, previous_owner=current.owner)
            except GenerationMismatchError:
                current = self.read(plan_id)  # someone else took it first; look again
        current = self.read(plan_id)
        assert current is not None
        return Held(current)

    def await_approval(
        self,
        plan_id: str,
        digest: str,
        case_name: str,
        result: dict[str, Any],
        approval: dict[str, Any],
    ) -> Record | None:
        """Record ``plan_id`` as awaiting approval (created only if it has no record yet);
        None if a record appeared first."""
        record = Record(
            plan_id=plan_id,
            digest=digest,
            case_name=case_name,
            state=RecordState.AWAITING_APPROVAL,
            owner=self.worker_id,
            token=uuid.uuid4().hex,
            lease_expires_at=0.0,
            attempts=0,
            result=result,
            approval=approval,
        )
        try:
            return self._write(record, if_generation_match=0)
        except GenerationMismatchError:
            return None

    def hold(self, record: Record, result: dict[str, Any], approval: dict[str, Any]) -> Record:
        """A claimed plan the gate held before its first change: it now awaits a decision
        (no lease; its case is free meanwhile). LeaseLostError if someone took over."""
        held = replace(
            record,
            state=RecordState.AWAITING_APPROVAL,
            token=uuid.uuid4().hex,
            lease_expires_at=0.0,
            attempts=0,  # not attempted: the claim that simulated it changed nothing
            result=result,
            approval=approval,
        )
        try:
            return self._write(held, record.generation)
        except GenerationMismatchError as exc:
            raise LeaseLostError(f"plan {record.plan_id} was taken over by another daemon") from exc

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
        except GenerationMismatchError as exc:
            raise LeaseLostError(f"plan {record.plan_id} was taken over by another daemon") from exc

    def release(self, record: Record) -> None:
        """End our lease now (the plan stays claimed, so the next daemon takes it over at
        once); quietly nothing if someone already has."""
        released = replace(record, token=uuid.uuid4().hex, lease_expires_at=0.0)
        with contextlib.suppress(GenerationMismatchError):
            self._write(released, record.generation)

    def complete(
        self, record: Record, result: dict[str, Any], undo: dict[str, Any] | None = None
    ) -> Record:
        done = replace(
            record,
            state=RecordState.DONE,
            result=result,
            undo=undo,
            token=uuid.uuid4().hex,
            lease_expires_at=0.0,
        )
        try:
            return self._write(done, record.generation)
        except GenerationMismatchError as exc:
            raise LeaseLostError(f"plan {record.plan_id} was taken over by another daemon") from exc

    # -- the case lease ---------------------------------------------------------------------------

    @staticmethod
    def case_lease_name(case_name: str) -> str:
        digest = hashlib.sha256(case_name.encode("utf-8", "surrogatepass")).hexdigest()
        return f"cases/{digest[:40]}.json"

    def acquire_case(
        self, case_name: str, plan_id: str, snapshot: CaseSnapshot | None = None
    ) -> CaseLease | CaseHeld:
        """Let ``plan_id`` change ``case_name`` unless another plan of it is unfinished.

        ``case_name`` is the normalised (NFC) name, so spellings of one case share a lease.
        ``snapshot``: the lease as :meth:`read_case` gave it a moment ago, used for the first look
        instead of reading it again. Any read is old by the time it is acted on: the write
        names the generation it saw, so a lease that changed since fails it (412) and the
        next look reads afresh; and "held" is only ever a reason to look again later.
        """
        name = self.case_lease_name(case_name)
        for _ in range(5):
            current, generation = snapshot or self.read_case(case_name)
            snapshot = None
            taken_from = None
            if current is not None and current.get("plan_id") not in ("", plan_id):
                holder_id = str(current.get("plan_id"))
                holder = self.read(holder_id)
                now = self.clock()
                seen = max(float(current.get("at", 0.0)), holder.updated_at if holder else 0.0)
                # A plan awaiting a decision changes nothing until it is approved: the case
                # is free meanwhile (approved, it takes the case again like any plan).
                finished = (RecordState.DONE, RecordState.AWAITING_APPROVAL)
                if holder is not None and holder.state not in finished:
                    if holder.lease_expires_at > now:
                        return CaseHeld(case_name, holder_id, holder.owner, "applying")
                    if now - seen <= self.abandon_seconds:
                        return CaseHeld(case_name, holder_id, holder.owner, "unfinished")
                    taken_from = holder_id
                elif holder is None and now - seen <= self.abandon_seconds:
                    # It took the case and has not claimed yet (or its claim failed and the
                    # message comes back): still its turn.
                    return CaseHeld(case_name, holder_id, str(current.get("owner")), "unfinished")
                elif holder is None:
                    taken_from = holder_id
            document = {
                "case_name": case_name,
                "plan_id": plan_id,
                "owner": self.worker_id,
                "at": self.clock(),
            }
            try:
                self.store.write(
                    name,
                    json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass"),
                    content_type="application/json",
                    if_generation_match=generation,
                )
            except GenerationMismatchError:
                continue  # another plan took it, or a retried upload of ours landed: look again
            return CaseLease(case_name, plan_id, taken_from)
        current, _ = self.read_case(case_name)
        holder_id = str((current or {}).get("plan_id", ""))
        if holder_id == plan_id:
            return CaseLease(case_name, plan_id)
        return CaseHeld(case_name, holder_id, str((current or {}).get("owner", "")), "applying")

    def read_case(self, case_name: str) -> CaseSnapshot:
        """The case lease document and its generation (0 when there is none)."""
        found = self._read_object(self.case_lease_name(case_name))
        if found is None:
            return None, 0
        data, generation = found
        try:
            document = json.loads(data)
        except ValueError:
            document = None
        if not isinstance(document, dict):  # not ours: overwrite it, generation-matched
            return {"plan_id": "", "at": 0.0}, generation
        return document, generation

    # -- the journal header, for a takeover on another machine ----------------------------------

    def save_journal(self, plan_id: str, header: bytes) -> None:
        self.store.write(
            self.journal_name(plan_id),
            header,
            content_type="application/jsonl",
            if_generation_match=None,
        )

    def load_journal(self, plan_id: str) -> bytes | None:
        found = self._read_object(self.journal_name(plan_id))
        return None if found is None else found.data
