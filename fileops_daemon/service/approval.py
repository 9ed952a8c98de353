"""Plans that wait for a person: what the daemon makes of wake-ups, duplicates and expiry.

A plan the policy picks is held by the gate (``service/gate.py``) before its first change:
recorded ``awaiting_approval`` with its document and the digest of its simulated changes, and
answered ``awaiting_approval``. An operator's signed decision (``service/decisions.py``) and a
wake-up message then settle it: rejected or expired, it is answered ``rejected`` here;
approved, it goes back through the normal path, where the gate checks the decision again and
lets it start only if the tree would still change the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from fileops_daemon.contract.approval import REJECT, Decision, WakeUp
from fileops_daemon.contract.errors import ErrorCode, PlanError, shorten
from fileops_daemon.contract.limits import Limits
from fileops_daemon.contract.plan import Plan, parse_plan
from fileops_daemon.core.paths import nfc
from fileops_daemon.core.volume import LocalVolume, Volume
from fileops_daemon.service.approval_policy import (
    DEFAULT_TTL_SECONDS,
    ApprovalPolicy,
    parse_duration,
)
from fileops_daemon.service.budget import StepBudget
from fileops_daemon.service.deciding import waiting_records
from fileops_daemon.service.decisions import (
    DecisionStore,
    audit_decision,
    create_once,
    is_plan_id,
    timestamp,
)
from fileops_daemon.service.gate import ApprovalGate, change_sources, rejection
from fileops_daemon.service.ledger import AWAITING_APPROVAL, Ledger, Record
from fileops_daemon.service.ledger_store import LedgerStore

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "Answer",
    "ApprovalDesk",
    "ApprovalPolicy",
    "DecisionStore",
    "Proceed",
    "create_once",
    "parse_duration",
    "source_listing",
    "stored_plan",
    "timestamp",
]

log = structlog.get_logger("fileops.approval")


@dataclass(frozen=True)
class Answer:
    """Answer the message with ``result``, routed to ``client_id`` (the plan's submitter);
    ``plan`` and ``decision`` are what its audit record names."""

    result: dict[str, Any]
    client_id: str
    plan: dict[str, Any] | None = None
    decision: Decision | None = None
    message_id: str = ""  # the plan message the answer names (in_reply_to)


@dataclass(frozen=True)
class Proceed:
    """Apply ``plan`` (approved) through the normal path; answer ``client_id``."""

    plan: Plan
    client_id: str
    decision: Decision
    message_id: str = ""


def source_listing(projects_root: str, changes: list[dict[str, Any]]) -> list[list[Any]]:
    """What the changes take away or take from below a local projects root: each moved, copied
    or trashed item and everything below it, as (path, kind, size, mtime_ns)."""
    return LocalVolume(projects_root).source_listing(change_sources(changes))


def stored_plan(record: Record, limits: Limits) -> Plan:
    """The plan a waiting record stores, parsed as it was sent (PlanError(state_invalid) if
    it is missing or does not match the record)."""
    stored = ApprovalDesk.plan_of(record)
    if stored is None:
        raise PlanError(ErrorCode.STATE_INVALID, "no plan document is stored for the plan")
    # An undo plan is the daemon's own (its id form is reserved): it parses as one.
    undo_of = stored.get("undo_of")
    plan = parse_plan(stored, limits, undo_of=undo_of if isinstance(undo_of, str) else None)
    if plan.digest != record.digest or plan.dry_run:
        raise PlanError(ErrorCode.STATE_INVALID, "the stored plan does not match its record")
    return plan


class ApprovalDesk:
    """The daemon's side: the gate, and what it does with decisions."""

    def __init__(
        self,
        policy: ApprovalPolicy,
        ledger: Ledger,
        decisions: DecisionStore,
        audit: LedgerStore,
        *,
        projects_root: str,
        limits: Limits,
        clock: Callable[[], float] = time.time,
        volume: Volume | None = None,
    ) -> None:
        self.policy = policy
        self.ledger = ledger
        self.decisions = decisions
        self.audit = audit
        self.limits = limits
        self.clock = clock
        budget = StepBudget(ledger.store, policy.min_steps, policy.window_seconds, clock)
        self.gate = ApprovalGate(
            policy, decisions, budget, volume or LocalVolume(projects_root), audit, clock
        )

    # -- a duplicate of a waiting plan --------------------------------------------------------

    def still_waiting(self, record: Record, started: datetime, attempt: int) -> dict[str, Any]:
        """A duplicate of a waiting plan: its awaiting result again, or, once the approval
        expired, the rejection that ends it."""
        if self._expired(record):
            return self._expire(record, started, attempt)
        assert record.result is not None
        return record.result

    @staticmethod
    def client_of(record: Record) -> str:
        return str((record.approval or {}).get("client_id") or "")

    @staticmethod
    def message_of(record: Record) -> str:
        """The plan message the waiting plan's answers name (in_reply_to)."""
        return str((record.approval or {}).get("message_id") or "")

    @staticmethod
    def plan_of(record: Record) -> dict[str, Any] | None:
        stored = (record.approval or {}).get("plan")
        return stored if isinstance(stored, dict) else None

    # -- sweeps -------------------------------------------------------------------------------

    def waiting(self) -> list[Record]:
        """The indexed plans still awaiting a decision (empty when the index cannot be
        listed)."""
        return waiting_records(self.ledger, self.decisions) if self.decisions.listable else []

    def decided_before(self, moment: float) -> list[tuple[str, str]]:
        """(plan_id, case_name) of each indexed plan still waiting although a decision on it
        was stored before ``moment`` (unverified: its wake-up verifies it)."""
        found = []
        for record in self.waiting():
            document = self.decisions.read(record.plan_id)
            at = document.get("at") if isinstance(document, dict) else None
            if isinstance(at, int | float) and not isinstance(at, bool) and at < moment:
                found.append((record.plan_id, record.case_name))
        return found

    def expired(self) -> list[tuple[str, str]]:
        """(plan_id, case_name) of each indexed plan still waiting past its expiry."""
        return [(r.plan_id, r.case_name) for r in self.waiting() if self._expired(r)]

    # -- a wake-up arrives --------------------------------------------------------------------

    def rule(self, wakeup: WakeUp, started: datetime, attempt: int) -> Answer | Proceed:
        """What a wake-up for ``wakeup.approval_of`` comes to. PlanError when it carries no
        valid decision: the wake-up is refused and the plan is left as it is."""
        plan_id = wakeup.approval_of
        record = self.ledger.read(plan_id) if is_plan_id(plan_id) else None
        if record is None or record.approval is None:
            raise PlanError(
                ErrorCode.APPROVAL_MISSING, f"no plan {plan_id!r} is or was awaiting approval"
            )
        if wakeup.case_name and nfc(wakeup.case_name) != nfc(record.case_name):
            raise PlanError(
                ErrorCode.SCHEMA_VIOLATION,
                f"a wake-up names its plan's case ({shorten(record.case_name, 100)!r}), "
                f"not {shorten(wakeup.case_name, 100)!r}",
            )
        client, stored = self.client_of(record), self.plan_of(record)
        message = self.message_of(record)
        if record.state == "done" and record.result is not None:  # decided: the same answer
            return Answer(record.result, client, stored, message_id=message)
        try:
            decision = self.decisions.checked(record, self.policy.keys)
        except PlanError as refused:
            # No valid decision: a plan past its expiry ends (whatever was stored, a forgery
            # included); one still waiting keeps waiting and the wake-up is refused.
            if record.state == AWAITING_APPROVAL and self._expired(record):
                ended = self._expire(record, started, attempt)
                return Answer(ended, client, stored, message_id=message)
            if refused.code is ErrorCode.APPROVAL_FORGED and self.policy.keys:
                # Only the daemon holds every approval key: a decision none of them verifies
                # goes, so it cannot keep the genuine operator's out.
                self.decisions.remove_unverified(plan_id, self.policy.keys)
            raise
        plan = self._stored_plan(record)
        if record.state != AWAITING_APPROVAL:
            return Proceed(plan, client, decision, message)  # approved and begun: resume it
        audit_decision(self.audit, decision, record.case_name)
        if decision.decision == REJECT:
            error = PlanError(
                ErrorCode.APPROVAL_REJECTED,
                f"rejected by {decision.by}" + (f": {decision.reason}" if decision.reason else ""),
            )
            ended = self._finish(record, error, started, attempt)
            return Answer(ended, client, stored, decision, message)
        if decision.at > float(record.approval.get("expires_at", 0)):
            return Answer(self._expire(record, started, attempt), client, stored, decision, message)
        return Proceed(plan, client, decision, message)

    def _stored_plan(self, record: Record) -> Plan:
        return stored_plan(record, self.limits)

    # -- endings ------------------------------------------------------------------------------

    def _expired(self, record: Record) -> bool:
        return self.clock() > float((record.approval or {}).get("expires_at", 0))

    def _expire(self, record: Record, started: datetime, attempt: int) -> dict[str, Any]:
        expired = Decision(
            plan_id=record.plan_id,
            decision="expired",
            plan_digest=record.digest,
            changes_digest=str((record.approval or {}).get("changes_digest", "")),
            by="fileops-daemon",
            at=self.clock(),
        )
        audit_decision(self.audit, expired, record.case_name)
        error = PlanError(
            ErrorCode.APPROVAL_EXPIRED,
            f"nobody approved the plan before {timestamp(float(record.approval['expires_at']))}"
            if record.approval
            else "the approval expired",
        )
        return self._finish(record, error, started, attempt)

    def _finish(
        self, record: Record, error: PlanError, started: datetime, attempt: int
    ) -> dict[str, Any]:
        """End a waiting plan unapplied: record and return its rejection."""
        result = rejection(record, error, started, attempt)
        self.ledger.complete(record, result)  # LeaseLostError if another decision won
        self.decisions.unindex(record.plan_id)
        log.info(
            "approval.ended",
            plan_id=record.plan_id,
            case_name=record.case_name,
            code=error.code.value,
        )
        return result
