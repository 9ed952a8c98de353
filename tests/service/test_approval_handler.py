"""Approvals in the handler, in process (in-memory ledger store, a real projects root): a
waiting plan is answered and changes nothing; only a decision signed with the approval key
lets it go, once, and its result goes to the agent that sent the plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fileops_daemon.contract.approval import APPROVE, REJECT, Decision, wakeup_document
from fileops_daemon.service.approval import ApprovalPolicy, DecisionStore
from fileops_daemon.service.handler import Disposition
from fileops_daemon.service.ledger import RecordState
from tests.service.test_handler_table import Daemon, Rig
from tests.support import CASE, SEED_OPS, plan_doc

APPROVAL_KEY = b"approval-key-0123456789abcdef"
PLAN_KEY = b"plan-key-0123456789abcdef012345"
ACK = Disposition.ack()


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    root = tmp_path / "projects"
    case = root / CASE
    (case / "uncategorized").mkdir(parents=True)
    (case / "Medical Records").mkdir()
    (case / "Investigation").mkdir()
    (case / "uncategorized" / "file1.pdf").write_text("one\n")
    return Rig(tmp_path, root)


def daemon(rig: Rig, name: str = "a") -> Daemon:
    policy = ApprovalPolicy(min_steps=1, ttl_seconds=3600, keys=(APPROVAL_KEY,))
    return rig.daemon(name, approval=policy)


def decide(
    rig: Rig, shown: dict[str, Any], verdict: str = APPROVE, key: bytes = APPROVAL_KEY
) -> None:
    decision = Decision(
        plan_id=shown["plan_id"],
        decision=verdict,
        plan_digest=shown["plan_digest"],
        changes_digest=shown["approval"]["changes_digest"],
        by="ops",
        at=rig.clock(),
        reason="no" if verdict == REJECT else "",
    )
    assert DecisionStore(rig.store).create(shown["plan_id"], decision.signed(key))


def wake(a: Daemon, message_id: str) -> Disposition:
    data = json.dumps(wakeup_document("p-1", CASE, "someone")).encode()
    return a.handle(data, message_id=message_id, client_id="operator")


def waiting(rig: Rig, a: Daemon) -> dict[str, Any]:
    before = rig.tree()
    assert a.handle(plan_doc(SEED_OPS), client_id="agent-1") == ACK
    [shown] = a.answers("p-1")
    assert shown["status"] == "awaiting_approval" and shown["changes"]
    assert a.results.answers[-1].extra == {"client_id": "agent-1"}
    assert rig.tree() == before
    record = rig.record("p-1")
    assert record is not None and record.state is RecordState.AWAITING_APPROVAL
    return shown


def test_a_waiting_plan_is_answered_again_on_a_duplicate_and_recorded_once(rig: Rig) -> None:
    a = daemon(rig)
    waiting(rig, a)
    record = rig.record("p-1")
    assert a.handle(plan_doc(SEED_OPS), message_id="m-2", client_id="agent-1") == ACK
    assert [r["status"] for r in a.answers("p-1")] == ["awaiting_approval"] * 2
    assert rig.record("p-1") == record


def test_wakeups_without_a_decision_signed_with_the_approval_key_change_nothing(
    rig: Rig,
) -> None:
    a = daemon(rig)
    shown = waiting(rig, a)
    before = rig.tree()
    assert wake(a, "w-1") == ACK
    refusals = [x for x in a.results.answers if x.result["plan_id"] != "p-1"]
    assert [r.result["errors"][0]["code"] for r in refusals] == ["approval_missing"]
    decide(rig, shown, key=PLAN_KEY)  # an agent's key, or any other
    assert wake(a, "w-2") == ACK
    refusals = [x for x in a.results.answers if x.result["plan_id"] != "p-1"]
    assert [r.result["errors"][0]["code"] for r in refusals][1:] == ["approval_forged"]
    assert all(r.extra == {} for r in refusals)  # unrouted, under the daemon's own names
    assert rig.tree() == before
    assert rig.record("p-1").state is RecordState.AWAITING_APPROVAL  # type: ignore[union-attr]


def test_an_approved_plan_is_applied_once_and_answered_to_its_agent(rig: Rig) -> None:
    a, b = daemon(rig, "a"), daemon(rig, "b")
    shown = waiting(rig, a)
    decide(rig, shown)
    assert wake(b, "w-1") == ACK
    [applied] = [r for r in b.answers("p-1") if r["status"] == "applied"]
    assert b.results.answers[-1].extra == {"client_id": "agent-1"}
    # It answers the agent's plan message (its id is what the agent's client waits for),
    # never the operator's wake-up.
    assert applied["in_reply_to"] == "m-1"
    assert (rig.root / CASE / "Medical Records" / "file1.pdf").exists()
    assert wake(a, "w-2") == ACK  # approved twice: the recorded result again, to the agent
    assert a.answers("p-1")[-1] == applied
    assert rig.record("p-1").attempts == 1  # type: ignore[union-attr]


def test_rejected_or_expired_plans_are_answered_rejected(rig: Rig) -> None:
    a = daemon(rig)
    shown = waiting(rig, a)
    decide(rig, shown, REJECT)
    assert wake(a, "w-1") == ACK
    assert a.answers("p-1")[-1]["errors"][0]["code"] == "approval_rejected"
    second = plan_doc(SEED_OPS, plan_id="p-2")
    assert a.handle(second, message_id="m-2") == ACK
    rig.clock.advance(3601)
    assert a.handle(second, message_id="m-3") == ACK
    assert a.answers("p-2")[-1]["errors"][0]["code"] == "approval_expired"
    assert rig.record("p-2").state is RecordState.DONE  # type: ignore[union-attr]
    assert (rig.root / CASE / "uncategorized" / "file1.pdf").exists()
