"""A person's decision on a waiting plan, as ``fileops approve``/``reject`` and the console
make it: the same checks, the same signed document, the same wake-up.

The decision is signed with the approval key and created once as ``approvals/<plan_id>.json``
(two people at once: one wins, the other is told who did); a stored decision that does not
verify under the key never locks the plan, ours replaces it. Then ``wake`` publishes the
wake-up (the caller's publisher: the CLI's client or the console's).
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fileops_daemon.contract.approval import APPROVE, REJECT, Decision, key_id, verify_decision
from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.contract.limits import Limits
from fileops_daemon.contract.plan import Plan
from fileops_daemon.core.execute import simulation_result
from fileops_daemon.core.simulate import simulate
from fileops_daemon.core.volume import Volume
from fileops_daemon.service.decisions import DecisionStore
from fileops_daemon.service.gate import simulated_digest
from fileops_daemon.service.ledger import AWAITING_APPROVAL, Ledger, Record

__all__ = [
    "Decided",
    "DecisionRefusedError",
    "Recheck",
    "Refusal",
    "Wake",
    "decide",
    "not_waiting",
    "recheck",
    "waiting_records",
]

#: Publishes the wake-up for (plan_id, case_name).
Wake = Callable[[str, str], None]


class Refusal(enum.StrEnum):
    """Why nothing was decided (the CLI's exit status follows from it)."""

    UNKNOWN = "unknown"  # no such plan
    NOT_WAITING = "not_waiting"  # applied, rejected, being applied, never waited
    WRONG_KEY = "wrong_key"  # our key is not one the daemon verifies with
    DIGEST = "digest"  # the changes shown to the person are not the waiting ones
    EXPIRED = "expired"  # too late (the daemon was told to end it)


class DecisionRefusedError(Exception):
    def __init__(self, refusal: Refusal, message: str) -> None:
        super().__init__(message)
        self.refusal = refusal
        self.message = message


@dataclass(frozen=True)
class Decided:
    """What stands on the plan after deciding: ``standing`` is ours, or the decision someone
    else made first (``ours`` False). ``replaced`` names who signed an invalid decision ours
    replaced."""

    record: Record
    standing: Decision
    ours: bool
    asked: str  # the verdict asked for
    replaced: str | None = None

    @property
    def agrees(self) -> bool:
        """Whether the decision that stands is the one asked for."""
        return self.standing.decision == self.asked


def not_waiting(record: Record) -> str:
    """One line on what a plan that awaits no decision is."""
    name = repr(record.plan_id)
    if record.state == "done" and record.result is not None:
        result = record.result
        errors = result.get("errors") or []
        why = ""
        if errors and isinstance(errors[0], dict):
            why = f" ({errors[0].get('code')}: {errors[0].get('message')})"
        return f"{name} is already {result.get('status')}{why}"
    if record.approval is None:
        return f"{name} never waited for approval (it is {record.state})"
    return f"{name} was approved and is being applied"


def decide(
    ledger: Ledger,
    decisions: DecisionStore,
    key: bytes,
    plan_id: str,
    verdict: str,
    *,
    by: str,
    reason: str = "",
    digest: str | None = None,
    wake: Wake,
    clock: Callable[[], float] = time.time,
) -> Decided:
    """Decide ``verdict`` (approve | reject) on the waiting plan ``plan_id`` as ``by``.
    ``digest``: refuse unless the waiting changes_digest starts with it (what the person saw).
    DecisionRefusedError when nothing was decided."""
    if digest is not None:
        digest = _digest_prefix(digest)
    record = ledger.read(plan_id)
    if record is None:
        raise DecisionRefusedError(
            Refusal.UNKNOWN, f"approval_missing: no plan {plan_id!r} is known"
        )
    if record.approval is None or record.state != AWAITING_APPROVAL:
        standing = _carried_out(record, decisions, key, verdict)
        if standing is not None and standing.changes_digest.startswith(digest or ""):
            # another operator decided the same way, on the same changes, first: it stands
            return Decided(record, standing, False, verdict)
        raise DecisionRefusedError(
            Refusal.NOT_WAITING, f"{not_waiting(record)}; nothing was decided"
        )
    held = record.approval.get("key_ids")
    if isinstance(held, list) and held and key_id(key) not in held:
        raise DecisionRefusedError(
            Refusal.WRONG_KEY,
            f"the approval key in FILEOPS_APPROVAL_KEY_FILE (id {key_id(key)}) is not one the "
            f"daemon checks decisions with ({', '.join(map(str, held))}); nothing was written",
        )
    shown = str(record.approval.get("changes_digest", ""))
    if digest is not None and not shown.startswith(digest):
        raise DecisionRefusedError(
            Refusal.DIGEST,
            f"the waiting plan's changes_digest is {shown}, not {digest}...; "
            "look at the waiting plan again (fileops pending)",
        )
    if clock() > float(record.approval.get("expires_at", 0)):
        wake(record.plan_id, record.case_name)  # the daemon answers it approval_expired
        raise DecisionRefusedError(
            Refusal.EXPIRED, f"approval_expired: {plan_id!r} can no longer be approved"
        )
    decision = Decision(
        plan_id=record.plan_id,
        decision=verdict,
        plan_digest=record.digest,
        changes_digest=shown,
        by=by,
        at=clock(),
        reason=reason,
    )
    others = [k for k in held if k != key_id(key)] if isinstance(held, list) else []
    standing, replaced = _store(decisions, decision, key, rotating=bool(others))
    wake(record.plan_id, record.case_name)
    return Decided(record, standing, standing is decision, verdict, replaced)


#: The fewest hex characters of a changes_digest that pin what a person saw (``--digest``).
MIN_DIGEST_PREFIX = 8


def _digest_prefix(digest: str) -> str:
    """``digest`` as the start of a changes_digest, or DecisionRefusedError: an empty or short
    one (an unset shell variable) would match any changes at all."""
    prefix = digest.strip().lower()
    if len(prefix) < MIN_DIGEST_PREFIX or prefix.strip("0123456789abcdef"):
        raise DecisionRefusedError(
            Refusal.DIGEST,
            f"--digest {digest!r} is not the start of a changes_digest: give at least "
            f"{MIN_DIGEST_PREFIX} of its hex characters as `fileops pending` shows them; "
            "nothing was decided",
        )
    return prefix


def _carried_out(
    record: Record, decisions: DecisionStore, key: bytes, verdict: str
) -> Decision | None:
    """The valid stored decision ``verdict`` on a plan that waited and has moved on because of
    it (being applied, applied, or rejected by it), or None. A second operator who approves
    a plan the first one's approval already applied asked for what happened."""
    if record.approval is None:
        return None
    try:
        standing = decisions.checked(record, (key,))
    except PlanError:
        return None
    if standing.decision != verdict:
        return None
    if record.state != "done" or record.result is None:
        return standing if verdict == APPROVE else None  # approved and being applied
    status = record.result.get("status")
    codes = [e.get("code") for e in record.result.get("errors") or [] if isinstance(e, dict)]
    if verdict == APPROVE and status == "applied":
        return standing
    if verdict == REJECT and status == "rejected" and codes[:1] == [ErrorCode.APPROVAL_REJECTED]:
        return standing
    return None


def _store(
    decisions: DecisionStore, decision: Decision, key: bytes, *, rotating: bool = False
) -> tuple[Decision, str | None]:
    """Store ``decision`` unless a valid one is there: the decision that stands. A stored
    decision that does not verify under our key (a wrong key, a forgery) never locks the plan
    out: ours replaces it, named by the generation we read. While the daemon also holds
    another key (``rotating``), such a decision may be valid under that key: it is left for
    the daemon, which removes it if it is forged (DecisionRefusedError, try again then)."""
    document = decision.signed(key)
    for _ in range(5):
        if decisions.create(decision.plan_id, document):
            return decision, None
        found = decisions.read_with_generation(decision.plan_id)
        if found is None:
            continue  # removed meanwhile: create it again
        existing, generation = found
        try:
            return verify_decision((key,), existing), None
        except PlanError:
            pass
        if rotating:
            by = existing.get("by") if isinstance(existing, dict) else None
            raise DecisionRefusedError(
                Refusal.NOT_WAITING,
                f"a decision by {by} is stored that your key cannot check (the daemon also "
                "holds another approval key): the daemon checks it with every key it holds, "
                "and removes it if it is forged; try again in a moment",
            )
        if decisions.replace_unverified(decision.plan_id, document, generation):
            by = existing.get("by") if isinstance(existing, dict) else None
            return decision, str(by)
    raise RuntimeError(f"the decision on {decision.plan_id!r} kept changing; try again")


def waiting_records(ledger: Ledger, decisions: DecisionStore, *, threads: int = 16) -> list[Record]:
    """The plans awaiting a decision, oldest first (the index lists them; each record is read,
    ``threads`` at a time, and an entry whose plan no longer waits is skipped)."""
    from concurrent.futures import ThreadPoolExecutor

    plan_ids = list(decisions.indexed())
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(plan_ids) or 1))) as pool:
        records = list(pool.map(ledger.read, plan_ids))
    waiting = [
        record
        for record in records
        if record is not None and record.state == AWAITING_APPROVAL and record.approval
    ]
    waiting.sort(key=lambda r: float((r.approval or {}).get("requested_at", 0)))
    return waiting


@dataclass(frozen=True)
class Recheck:
    """The waiting plan simulated again now: whether it would still change the tree exactly
    as shown (``same``), and, when not, what it would do now (``result``)."""

    same: bool
    digest: str | None  # None: the plan would now be refused (``result`` says why)
    result: dict[str, Any]


def recheck(plan: Plan, shown_digest: str, volume: Volume, limits: Limits) -> Recheck:
    """Simulate ``plan`` on the tree as it is now, as the gate will before the first step, and
    compare with the digest that was shown. OSError (the tree could not be read) propagates."""
    from datetime import UTC, datetime

    sim = simulate(plan, volume.root, limits, volume=volume)
    result = simulation_result(sim, datetime.now(UTC))
    if not sim.ok:
        return Recheck(False, None, result)
    assert sim.case_dir is not None  # a simulation that passed found the case folder
    digest = simulated_digest(volume, result, os.path.basename(sim.case_dir))
    return Recheck(digest == shown_digest, digest, result)
