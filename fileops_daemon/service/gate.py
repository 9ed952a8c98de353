"""The approval gate: the one place that decides whether a claimed plan may start changing files.

It runs inside the apply (``core.execute.Admit``), on the simulation the steps come from, under
the case lease and the plan's claim, before the journal exists. Every plan and every undo that
reaches the files passes here; a resumed run passed here before its first step. A fault while
deciding is a fault: the exception stops the apply (nothing changed) and the message is retried.

- A plan that once waited (its record carries ``approval``) starts only with a decision signed
  with the approval key, on its digest and the very changes shown, made before the plan
  expired, and only if this simulation still comes to those changes (else ``tree_changed``).
  Without such a decision it waits again, whatever brought it here (a crash, a forged wake-up).
- Any other plan waits if the policy picks it: its own steps, what it sends to the trash, its
  case (NFC), or the steps its case or sender applied without a decision within the window.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from fileops_daemon.contract.approval import APPROVE, Decision, changes_digest, key_id
from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.contract.plan import Plan
from fileops_daemon.contract.results import ResultStatus, build_result
from fileops_daemon.core.outcome import ApplyOutcome, RunEnd
from fileops_daemon.core.volume import Volume
from fileops_daemon.service.approval_policy import ApprovalPolicy
from fileops_daemon.service.budget import StepBudget
from fileops_daemon.service.decisions import DecisionStore, audit_decision, timestamp
from fileops_daemon.service.lease import LeaseKeeper
from fileops_daemon.service.ledger import AWAITING_APPROVAL, Record
from fileops_daemon.service.ledger_store import LedgerStore

__all__ = ["ApprovalGate", "change_sources", "rejection", "simulated_digest"]

log = structlog.get_logger("fileops.gate")


def change_sources(changes: list[dict[str, Any]]) -> list[str]:
    """The paths the changes take away or take from (moved, copied or trashed), once each."""
    sources: dict[str, None] = {}  # ordered, each once
    for change in changes:
        source = change.get("path") if change.get("action") == "trash" else change.get("from")
        if isinstance(source, str):
            sources[source] = None
    return list(sources)


def simulated_digest(volume: Volume, simulated: dict[str, Any], case_folder: str) -> str:
    """The changes digest of a simulation, with a listing of what it takes from on
    ``volume``: what a person is shown and what the gate compares before the first step.

    The changes name the case as the plan spelled it; the listing reads the folder the
    simulation found (``case_folder``), so that another Unicode spelling of the case cannot
    make every source look missing, and the digest blind to what changes below them."""
    sources = [
        "/".join((case_folder, *source.split("/")[1:]))
        for source in change_sources(simulated.get("changes") or [])
    ]
    return changes_digest(simulated, volume.source_listing(sources))


def rejection(record: Record, error: PlanError, started: datetime, attempt: int) -> dict[str, Any]:
    """The ``rejected`` result of a plan that ends unapplied."""
    return build_result(
        plan_id=record.plan_id,
        case_name=record.case_name,
        dry_run=False,
        status=ResultStatus.REJECTED,
        started=started,
        errors=[error],
        attempt=attempt,
        extra={"plan_digest": record.digest},
    )


class ApprovalGate:
    def __init__(
        self,
        policy: ApprovalPolicy,
        decisions: DecisionStore,
        budget: StepBudget,
        volume: Volume,
        audit: LedgerStore,
        clock: Callable[[], float],
    ) -> None:
        self.policy = policy
        self.decisions = decisions
        self.audit = audit
        self.budget = budget
        self.volume = volume
        self.clock = clock

    def digest(self, simulated: dict[str, Any], case_folder: str) -> str:
        """The changes digest of a simulation, with a listing of what it takes from."""
        return simulated_digest(self.volume, simulated, case_folder)

    def admit(
        self,
        plan: Plan,
        keeper: LeaseKeeper,
        sender: tuple[str, str],
        simulated: dict[str, Any],
        case_folder: str,
        started: datetime,
        attempt: int,
    ) -> ApplyOutcome | None:
        """None: the plan may start. Else how it ends now: held for a person, or refused.
        ``sender``: the client id and the message id its answers go to, should it wait."""
        record = keeper.record
        if record.approval is not None:
            return self._decided(plan, keeper, simulated, case_folder, started, attempt)
        reasons = self.policy.reasons(plan.case_name, simulated, case_folder=case_folder)
        steps = int(simulated.get("steps", 0))
        requested_by = str(plan.document.get("requested_by") or "")
        if self.policy.budgeted and steps <= self.policy.min_steps:  # else it waits anyway
            reasons += self.budget.reasons(plan.plan_id, plan.case_name, requested_by, steps)
        if reasons:
            return self._hold(plan, keeper, sender, simulated, case_folder, reasons)
        self.budget.spend(plan.plan_id, plan.case_name, requested_by, steps)
        return None

    # -- a plan that waited -------------------------------------------------------------------

    def _decided(
        self,
        plan: Plan,
        keeper: LeaseKeeper,
        simulated: dict[str, Any],
        case_folder: str,
        started: datetime,
        attempt: int,
    ) -> ApplyOutcome | None:
        record = keeper.record
        approval = record.approval or {}
        decision = self._valid_decision(record)
        expires = float(approval.get("expires_at", 0))
        bound = log.bind(plan_id=plan.plan_id, case_name=plan.case_name)
        if decision is None:
            if self.clock() > expires:
                return _refused(record, ErrorCode.APPROVAL_EXPIRED, _expired(expires), started)
            bound.warning("approval.no_valid_decision")  # a crash or a forged wake-up
            assert record.result is not None
            keeper.hold(record.result, approval)
            return ApplyOutcome(RunEnd.HELD, record.result)
        audit_decision(self.audit, decision, record.case_name)
        if decision.decision != APPROVE:
            why = f"rejected by {decision.by}" + (f": {decision.reason}" if decision.reason else "")
            return _refused(record, ErrorCode.APPROVAL_REJECTED, why, started)
        if decision.at > expires:
            return _refused(record, ErrorCode.APPROVAL_EXPIRED, _expired(expires), started)
        if self.digest(simulated, case_folder) != approval.get("changes_digest"):
            bound.warning("approval.tree_changed")
            return _refused(
                record,
                ErrorCode.TREE_CHANGED,
                "the tree changed since the simulation that was approved: the plan would now "
                "do something else; nothing was changed. Send a new plan",
                started,
                attempt,
            )
        self.decisions.unindex(plan.plan_id)
        bound.info("approval.admitted", decided_by=decision.by)
        return None

    def _valid_decision(self, record: Record) -> Decision | None:
        try:
            return self.decisions.checked(record, self.policy.keys)
        except PlanError:
            return None

    # -- a plan that must wait ----------------------------------------------------------------

    def _hold(
        self,
        plan: Plan,
        keeper: LeaseKeeper,
        sender: tuple[str, str],
        simulated: dict[str, Any],
        case_folder: str,
        reasons: list[str],
    ) -> ApplyOutcome:
        at = self.clock()
        expires = at + self.policy.ttl_seconds
        digest = self.digest(simulated, case_folder)
        result = {
            **simulated,
            "status": AWAITING_APPROVAL,
            "approval": {
                "changes_digest": digest,
                "reasons": reasons,
                "expires_at": timestamp(expires),
            },
        }
        approval = {
            "plan": dict(plan.document),
            "changes_digest": digest,
            "reasons": reasons,
            "requested_at": at,
            "expires_at": expires,
            "client_id": sender[0],
            "message_id": sender[1],  # the agent's message: every later answer names it
            # Which approval keys can decide: `fileops approve` refuses to write a decision
            # under any other key (it could never verify, and would only confuse people).
            "key_ids": [key_id(key) for key in self.policy.keys],
        }
        # Indexed first: an entry whose plan does not wait is skipped by `pending`, while a
        # waiting plan missing from the index would be found by nobody.
        self.decisions.index(plan.plan_id, plan.case_name, at)
        keeper.hold(result, approval)
        log.info(
            "approval.awaiting",
            plan_id=plan.plan_id,
            case_name=plan.case_name,
            reasons=reasons,
            changes_digest=digest,
        )
        return ApplyOutcome(RunEnd.HELD, result)


def _expired(expires: float) -> str:
    return f"nobody approved the plan before {timestamp(expires)}"


def _refused(
    record: Record, code: ErrorCode, message: str, started: datetime, attempt: int = 1
) -> ApplyOutcome:
    return ApplyOutcome(
        RunEnd.REJECTED, rejection(record, PlanError(code, message), started, attempt)
    )
