"""What the console's pages ask of the daemon's state: waiting plans, one plan, a re-check of
its tree, a decision (``service/deciding.py``, the very function ``fileops approve`` runs),
an undo preview and an undo request."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from fileops_daemon.contract.errors import PlanError
from fileops_daemon.contract.limits import Limits
from fileops_daemon.core.execute import dry_run
from fileops_daemon.core.undo import build_undo_plan, undo_plan_id, undo_request_document
from fileops_daemon.core.volume import Volume
from fileops_daemon.service.approval import stored_plan, timestamp
from fileops_daemon.service.deciding import Decided, Recheck, decide, recheck, waiting_records
from fileops_daemon.service.decisions import DecisionStore, is_plan_id
from fileops_daemon.service.ledger import Ledger, Record
from fileops_daemon.service.outputs import AuditLog

__all__ = ["Desk", "Waiting"]

log = structlog.get_logger("fileops.console")

#: Audit records read for a plan page's "who asked, and why": at most this large, this
#: many kept (a finished plan's record never changes), (connect, read) seconds a request.
AUDIT_MAX_BYTES = 1 << 20
REQUESTED_KEPT = 512
AUDIT_TIMEOUT = (5.0, 20.0)

#: Publishes a message on the plans topic (a wake-up or an undo request): its message id.
Publish = Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class Waiting:
    """One row of the pending page."""

    plan_id: str
    case_name: str
    requested_by: str
    reason: str
    steps: int
    changes: int
    why: tuple[str, ...]
    requested_at: str
    expires_at: str
    expired: bool


class Desk:
    def __init__(
        self,
        ledger: Ledger,
        decisions: DecisionStore,
        volume: Volume,
        limits: Limits,
        key: bytes,
        publish: Publish,
        clock: Callable[[], float] = time.time,
        audit: Any = None,
    ) -> None:
        self.ledger = ledger
        self.decisions = decisions
        self.volume = volume
        self.limits = limits
        self.key = key
        self.publish = publish
        self.clock = clock
        #: The audit bucket (google.cloud.storage Bucket): the plan as sent, for a plan
        #: that never waited (its ledger record keeps only the result); None: not shown.
        self.audit = audit
        self._requested: dict[str, dict[str, Any]] = {}  # audit object -> its plan
        self._requested_lock = threading.Lock()

    # -- reading ------------------------------------------------------------------------------

    def pending(self) -> list[Waiting]:
        rows = []
        now = self.clock()
        for record in waiting_records(self.ledger, self.decisions):
            approval = record.approval or {}
            stored = approval.get("plan")
            plan: dict[str, Any] = stored if isinstance(stored, dict) else {}
            result = record.result or {}
            expires = float(approval.get("expires_at", 0))
            rows.append(
                Waiting(
                    plan_id=record.plan_id,
                    case_name=record.case_name,
                    requested_by=str(plan.get("requested_by") or ""),
                    reason=str(plan.get("reason") or ""),
                    steps=int(result.get("steps", 0) or 0),
                    changes=len(result.get("changes") or []),
                    why=tuple(str(reason) for reason in approval.get("reasons", [])),
                    requested_at=timestamp(float(approval.get("requested_at", 0))),
                    expires_at=timestamp(expires),
                    expired=now > expires,
                )
            )
        return rows

    def record(self, plan_id: str) -> Record | None:
        return self.ledger.read(plan_id) if is_plan_id(plan_id) else None

    def requested(self, record: Record) -> dict[str, Any] | None:
        """The plan as its agent sent it (who asked, why): stored with a plan that waited,
        else read from the audit record of its answer; None when neither can be read."""
        stored = (record.approval or {}).get("plan")
        if isinstance(stored, dict):
            return stored
        result = record.result or {}
        message = result.get("in_reply_to")
        if self.audit is None or not isinstance(message, str) or "started_at" not in result:
            return None
        name = AuditLog.name_for(result, message)
        with self._requested_lock:  # pages are served from a thread pool
            if name in self._requested:
                return self._requested[name]
        plan = self._audited_plan(name)
        if plan is not None:  # a finished plan's audit record is final: kept (not a miss)
            with self._requested_lock:
                self._requested[name] = plan
                while len(self._requested) > REQUESTED_KEPT:
                    self._requested.pop(next(iter(self._requested)))
        return plan

    def _audited_plan(self, name: str) -> dict[str, Any] | None:
        try:
            blob = self.audit.get_blob(name, retry=None, timeout=AUDIT_TIMEOUT)
            if blob is None or (blob.size or 0) > AUDIT_MAX_BYTES:
                return None  # not there, or a plan too large to read for two fields
            document = json.loads(blob.download_as_bytes(retry=None, timeout=AUDIT_TIMEOUT))
        except Exception as exc:  # not readable: the page says it is not known
            log.info("console.audit_unread", object=name, error=str(exc)[:200])
            return None
        plan = document.get("plan") if isinstance(document, dict) else None
        return plan if isinstance(plan, dict) else None

    def undone(self, record: Record) -> Record | None:
        """The record of the plan's undo, once one was asked for (None also when the ledger
        cannot be read now: the page then offers the undo preview, which says so)."""
        try:
            return self.ledger.read(undo_plan_id(record.plan_id))
        except Exception as exc:
            log.warning("console.undo_unread", plan_id=record.plan_id, error=str(exc)[:200])
            return None

    def recheck(self, record: Record) -> Recheck | str:
        """The waiting plan simulated on today's tree; a text when that cannot be done."""
        try:
            plan = stored_plan(record, self.limits)
            shown = str((record.approval or {}).get("changes_digest", ""))
            return recheck(plan, shown, self.volume, self.limits)
        except PlanError as exc:
            return f"{exc.code.value}: {exc.message}"
        except OSError as exc:
            return f"the tree could not be read: {exc}"

    def undo_preview(self, record: Record) -> dict[str, Any] | str:
        """What undoing an applied plan would change now (a dry run here, on the same volume
        the daemon uses; nothing changes); a text when there is nothing to undo."""
        if record.undo is None:
            return "no inverse is recorded for this plan"
        try:
            plan = build_undo_plan(
                record.plan_id, record.undo, record.case_name, dry_run=True, limits=self.limits
            )
        except PlanError as exc:
            return f"{exc.code.value}: {exc.message}"
        outcome = dry_run(plan, self.volume.root, limits=self.limits, volume=self.volume)
        return outcome.result

    @staticmethod
    def state_key(record: Record | None) -> str:
        """Changes whenever what the plan's page shows would (the page reloads then)."""
        if record is None:
            return "none"
        status = (record.result or {}).get("status", "")
        return f"{record.state}:{status}:{record.generation}"

    # -- changing -----------------------------------------------------------------------------

    def decide(
        self, plan_id: str, verdict: str, *, by: str, reason: str = "", digest: str = ""
    ) -> Decided:
        """DecisionRefusedError when nothing was decided (the page says why)."""
        decided = decide(
            self.ledger,
            self.decisions,
            self.key,
            plan_id,
            verdict,
            by=by,
            reason=reason,
            digest=digest or None,
            wake=self._wake,
            clock=self.clock,
        )
        log.info(
            "console.decided",
            plan_id=plan_id,
            decision=decided.standing.decision,
            by=decided.standing.by,
            ours=decided.ours,
        )
        return decided

    def _wake(self, plan_id: str, case_name: str) -> None:
        from fileops_daemon.contract.approval import wakeup_document

        self.publish(wakeup_document(plan_id, case_name, "fileops console"))

    def undo(self, record: Record, by: str) -> str:
        """Ask the daemon to undo ``record``'s plan (the gate may hold it for a decision):
        the undo plan's id."""
        request = undo_request_document(
            record.plan_id, record.case_name, dry_run=False, requested_by=f"console: {by}"
        )
        self.publish(request)
        log.info("console.undo_requested", plan_id=record.plan_id, by=by)
        return undo_plan_id(record.plan_id)
