"""The operators' decisions and the index of waiting plans, in the ledger's store.

``approvals/<plan_id>.json`` holds one signed decision per plan, written only if absent, so two
operators at once cannot both win. A stored decision that does not verify (a wrong key, a
forgery) never locks the plan: the genuine operator's decision replaces it, named by the
generation that was read (:meth:`DecisionStore.replace_unverified`). ``awaiting/<plan_id>.json``
indexes the waiting plans for ``fileops pending`` and the daemon's sweeps.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from google.cloud import storage

from fileops_daemon.contract.approval import Decision, verify_decision
from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.service.cloud import CloudRetry
from fileops_daemon.service.ledger import Record
from fileops_daemon.service.ledger_store import GenerationMismatchError, LedgerStore

__all__ = ["DecisionStore", "audit_decision", "create_once", "is_plan_id", "timestamp"]

_PLAN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")


def is_plan_id(text: str) -> bool:
    """Whether ``text`` has plan.schema.json's plan_id form (safe in an object name)."""
    return bool(_PLAN_ID.fullmatch(text))


def timestamp(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def create_once(
    store: LedgerStore, name: str, document: Mapping[str, Any], *, indent: int | None = 1
) -> bool:
    """Write ``document`` as ``name`` unless it exists (True if this write created it)."""
    data = _encode(document, indent)
    try:
        store.write(name, data, content_type="application/json", if_generation_match=0)
    except GenerationMismatchError:
        return False
    return True


def _encode(document: Mapping[str, Any], indent: int | None = 1) -> bytes:
    return json.dumps(document, ensure_ascii=False, sort_keys=True, indent=indent).encode("utf-8")


class DecisionStore:
    """Decisions and the waiting index. ``bucket``, the same state bucket, lists and prunes
    the index; without it (in-memory stores in unit tests) the index is written and never
    pruned."""

    def __init__(
        self,
        store: LedgerStore,
        bucket: storage.Bucket | None = None,
        retry: CloudRetry | None = None,
    ) -> None:
        self.store = store
        self.bucket = bucket
        self.retry = retry or CloudRetry(3)

    @staticmethod
    def decision_name(plan_id: str) -> str:
        return f"approvals/{plan_id}.json"

    @staticmethod
    def index_name(plan_id: str) -> str:
        return f"awaiting/{plan_id}.json"

    def read(self, plan_id: str) -> Any | None:
        """The stored decision document (unverified), or None."""
        found = self.store.read(self.decision_name(plan_id))
        return None if found is None else _decode(found.data)

    def read_with_generation(self, plan_id: str) -> tuple[Any, int] | None:
        found = self.store.read(self.decision_name(plan_id))
        return None if found is None else (_decode(found.data), found.generation)

    def checked(self, record: Record, keys: Sequence[bytes]) -> Decision:
        """The stored decision on ``record``'s plan, signed with one of ``keys`` and about its
        digest and the changes shown; PlanError (approval_missing or approval_forged) else."""
        document = self.read(record.plan_id)
        if document is None:
            raise PlanError(
                ErrorCode.APPROVAL_MISSING, f"no decision is recorded on {record.plan_id!r}"
            )
        decision = verify_decision(keys, document)
        if (
            decision.plan_id != record.plan_id
            or decision.plan_digest != record.digest
            or decision.changes_digest != (record.approval or {}).get("changes_digest")
        ):
            raise PlanError(
                ErrorCode.APPROVAL_FORGED,
                f"the decision on {record.plan_id!r} is for another plan or other changes",
            )
        return decision

    def create(self, plan_id: str, document: Mapping[str, Any]) -> bool:
        """Store a decision unless one exists (True if this one won)."""
        return create_once(self.store, self.decision_name(plan_id), document)

    def replace_unverified(
        self, plan_id: str, document: Mapping[str, Any], generation: int
    ) -> bool:
        """Put ``document`` in place of a stored decision that does not verify, read at
        ``generation`` (False if it changed since: look again)."""
        try:
            self.store.write(
                self.decision_name(plan_id),
                _encode(document),
                content_type="application/json",
                if_generation_match=generation,
            )
        except GenerationMismatchError:
            return False
        return True

    def remove_unverified(self, plan_id: str, keys: Sequence[bytes]) -> bool:
        """Delete the stored decision on ``plan_id`` if none of ``keys`` (all the daemon
        holds) verifies it, named by the generation read: a forgery must not keep the
        genuine operator out. True if one was removed."""
        found = self.read_with_generation(plan_id)
        if found is None or self.bucket is None:
            return False
        document, generation = found
        try:
            verify_decision(keys, document)
            return False
        except PlanError:
            pass
        blob = self.bucket.blob(self.decision_name(plan_id))
        try:
            self.retry.call(blob.delete, if_generation_match=generation, retry=None)
        except Exception:  # changed meanwhile (412), or gone: nothing of ours to remove
            return False
        return True

    def index(self, plan_id: str, case_name: str, at: float) -> None:
        entry = {"plan_id": plan_id, "case_name": case_name, "at": at}
        create_once(self.store, self.index_name(plan_id), entry)

    def unindex(self, plan_id: str) -> None:
        """Best effort: ``fileops pending`` skips an entry whose plan no longer waits."""
        if self.bucket is not None:
            with contextlib.suppress(Exception):
                self.retry.call(self.bucket.blob(self.index_name(plan_id)).delete, retry=None)

    @property
    def listable(self) -> bool:
        """Whether :meth:`indexed` can list the index (it needs ``bucket``)."""
        return self.bucket is not None

    def indexed(self) -> Iterator[str]:
        """The plan ids in the index (needs ``bucket``)."""
        assert self.bucket is not None, "listing the index needs the bucket"
        bucket = self.bucket
        # retry=None: our own retry is the only one (the library's would retry an unreachable
        # GCS for minutes before `fileops pending` could say so).
        listing = self.retry.call(lambda: list(bucket.list_blobs(prefix="awaiting/", retry=None)))
        for blob in listing:
            name = blob.name.removeprefix("awaiting/").removesuffix(".json")
            if _PLAN_ID.fullmatch(name):
                yield name


def audit_decision(audit: LedgerStore, decision: Decision, case_name: str) -> None:
    """Who decided what about which digest, once, beside the other audit records."""
    day = datetime.fromtimestamp(decision.at, UTC)
    name = f"approvals/{day:%Y/%m/%d}/{decision.plan_id}.json"
    document = {
        "plan_id": decision.plan_id,
        "case_name": case_name,
        "decision": decision.decision,
        "by": decision.by,
        "at": timestamp(decision.at),
        "reason": decision.reason,
        "plan_digest": decision.plan_digest,
        "changes_digest": decision.changes_digest,
    }
    create_once(audit, name, document, indent=None)  # one line: a BigQuery NDJSON row


def _decode(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return {}  # not a decision: verification refuses it
