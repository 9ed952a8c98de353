"""The approval gate at its seams, in process (in-memory ledger store, a real projects root):
every way of reaching a change the policy says must wait — another spelling of the case, a
passing read fault, a fault or crash between the claim and the re-check, an undo, splitting a
plan, a forged decision — ends waiting or refused, never applied."""

from __future__ import annotations

import errno
import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from fileops_daemon.contract.approval import (
    APPROVE,
    REJECT,
    Decision,
    key_id,
    verify_decision,
    wakeup_document,
)
from fileops_daemon.contract.envvars import ConfigError
from fileops_daemon.core import execute as execute_module
from fileops_daemon.core import run as run_module
from fileops_daemon.core.undo import undo_plan_id
from fileops_daemon.service.approval import ApprovalPolicy, DecisionStore
from fileops_daemon.service.config import Config, mounted_bucket
from fileops_daemon.service.deciding import Decided, DecisionRefusedError, decide
from fileops_daemon.service.gate import ApprovalGate
from fileops_daemon.service.handler import Disposition, Verdict
from fileops_daemon.service.lease import LeaseKeeper
from fileops_daemon.service.ledger import RecordState
from tests.service.test_handler_table import LEASE, Daemon, Rig
from tests.support import CASE, plan_doc

KEY = b"approval-key-0123456789abcdef"
ACK = Disposition.ack()
NFC_CASE = unicodedata.normalize("NFC", "Zoë-Case")
NFD_CASE = unicodedata.normalize("NFD", "Zoë-Case")


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    root = tmp_path / "projects"
    case = root / CASE
    (case / "inbox").mkdir(parents=True)
    (case / "Old").mkdir()
    (case / "Old" / "memo.txt").write_text("memo\n")
    for n in range(6):
        (case / "inbox" / f"f{n}.pdf").write_text(f"file {n}\n")
    (root / NFC_CASE / "inbox").mkdir(parents=True)
    (root / NFC_CASE / "inbox" / "a.pdf").write_text("a\n")
    return Rig(tmp_path, root)


def daemon(rig: Rig, name: str = "a", **policy: Any) -> Daemon:
    settings: dict[str, Any] = {"ttl_seconds": 3600, "keys": (KEY,), **policy}
    return rig.daemon(name, approval=ApprovalPolicy(**settings))


def moves(count: int, start: int = 0, case: str = CASE) -> list[dict[str, Any]]:
    return [
        {"type": "move", "from": f"{case}/inbox/f{n}.pdf", "to": f"{case}/f{n}.pdf"}
        for n in range(start, start + count)
    ]


def status(d: Daemon, plan_id: str) -> str:
    return str(d.answers(plan_id)[-1]["status"])


def code(d: Daemon, plan_id: str) -> str:
    return str(d.answers(plan_id)[-1]["errors"][0]["code"])


def approve(rig: Rig, plan_id: str, key: bytes = KEY, by: str = "ops") -> None:
    record = rig.record(plan_id)
    assert record is not None and record.approval is not None
    decision = Decision(
        plan_id=plan_id,
        decision=APPROVE,
        plan_digest=record.digest,
        changes_digest=record.approval["changes_digest"],
        by=by,
        at=rig.clock(),
    )
    assert DecisionStore(rig.store).create(plan_id, decision.signed(key))


def decide_on(
    rig: Rig,
    d: Daemon,
    verdict: str,
    *,
    by: str,
    key: bytes = KEY,
    digest: str | None = None,
    woken: list[Any] | None = None,
) -> Decided:
    """What ``fileops approve``/``reject`` of p-1 does as ``by``; the wake-ups it would
    publish are kept in ``woken``."""
    told = woken if woken is not None else []
    return decide(
        d.ledger,
        DecisionStore(rig.store),
        key,
        "p-1",
        verdict,
        by=by,
        digest=digest,
        wake=lambda *w: told.append(w),
        clock=rig.clock,
    )


def wake(d: Daemon, plan_id: str, message_id: str, case: str = CASE) -> Disposition:
    data = json.dumps(wakeup_document(plan_id, case, "ops")).encode()
    return d.handle(data, message_id=message_id)


class TestSpellings:
    @pytest.mark.parametrize("pattern", [NFC_CASE[:3] + "*", NFD_CASE[:4] + "*"])
    @pytest.mark.parametrize("spelling", [NFC_CASE, NFD_CASE])
    def test_every_unicode_spelling_of_a_case_matches_the_pattern(
        self, rig: Rig, pattern: str, spelling: str
    ) -> None:
        a = daemon(rig, cases=(pattern,))
        ops = [{"type": "mkdir", "path": f"{spelling}/new"}]
        assert a.handle(plan_doc(ops, case=spelling)) == ACK
        assert status(a, "p-1") == "awaiting_approval"
        assert not (rig.root / NFC_CASE / "new").exists()


class TestFaultsFailClosed:
    def test_a_passing_read_fault_while_deciding_never_lets_the_plan_through(
        self, rig: Rig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        a = daemon(rig, on_trash=True)
        real = execute_module.simulate
        faults = {"left": 1}

        def flaky(*args: Any, **kwargs: Any) -> Any:
            if faults["left"]:
                faults["left"] -= 1
                raise OSError(errno.EIO, "Input/output error")
            return real(*args, **kwargs)

        monkeypatch.setattr(execute_module, "simulate", flaky)
        ops = [{"type": "delete", "path": f"{CASE}/Old"}]
        assert a.handle(plan_doc(ops)) == ACK
        assert status(a, "p-1") == "awaiting_approval"
        assert (rig.root / CASE / "Old" / "memo.txt").exists()

    def test_a_read_fault_that_lasts_is_retried_later_and_changes_nothing(
        self, rig: Rig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        a = daemon(rig, on_trash=True)

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(execute_module, "simulate", broken)
        ops = [{"type": "delete", "path": f"{CASE}/Old"}]
        assert a.handle(plan_doc(ops)).verdict is Verdict.NACK
        assert a.answers("p-1") == []
        assert (rig.root / CASE / "Old" / "memo.txt").exists()

    @pytest.mark.parametrize("crash", ["fault", "kill"])
    def test_an_approved_plan_interrupted_before_its_recheck_is_rechecked_on_redelivery(
        self, rig: Rig, monkeypatch: pytest.MonkeyPatch, crash: str
    ) -> None:
        a, b = daemon(rig, "a", on_trash=True), daemon(rig, "b", on_trash=True)
        ops = [{"type": "delete", "path": f"{CASE}/Old"}]
        assert a.handle(plan_doc(ops)) == ACK
        approve(rig, "p-1")
        # Another agent moves a file into the folder with a small plan the policy lets by.
        other = [{"type": "move", "from": f"{CASE}/inbox/f0.pdf", "to": f"{CASE}/Old/f0.pdf"}]
        assert a.handle(plan_doc(other, plan_id="p-2"), message_id="m-2") == ACK
        assert status(a, "p-2") == "applied"
        real = ApprovalGate.digest
        monkeypatch.setattr(ApprovalGate, "digest", _raise_once(real))
        if crash == "kill":  # a killed daemon gives nothing back
            monkeypatch.setattr(LeaseKeeper, "release", lambda self: None)
        first = wake(a, "p-1", "w-1")
        assert first.verdict is Verdict.NACK
        record = rig.record("p-1")
        assert record is not None and record.state is RecordState.CLAIMED
        if crash == "kill":  # the lease holder died, its lease left: another daemon takes over
            rig.clock.advance(LEASE + 1)
            done = wake(b, "p-1", "w-1", CASE)
            answered = b
        else:
            done = wake(a, "p-1", "w-1", CASE)
            answered = a
        assert done == ACK
        assert status(answered, "p-1") == "rejected"
        assert code(answered, "p-1") == "tree_changed"
        assert (rig.root / CASE / "Old" / "f0.pdf").exists()

    def test_a_resend_or_a_wake_up_without_a_valid_decision_applies_nothing(
        self, rig: Rig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        a = daemon(rig, min_steps=2)
        assert a.handle(plan_doc(moves(3))) == ACK
        approve(rig, "p-1", key=b"not-the-approval-key-000000000000")  # forged
        assert a.handle(plan_doc(moves(3)), message_id="m-2") == ACK
        assert wake(a, "p-1", "w-1") == ACK
        assert all(r["status"] != "applied" for r in a.answers("p-1"))
        assert (rig.root / CASE / "inbox" / "f0.pdf").exists()


#: Each policy, and a plan it picks (the fixture's tree).
POLICIES: dict[str, tuple[dict[str, Any], str, list[dict[str, Any]]]] = {
    "steps": ({"min_steps": 2}, CASE, moves(3)),
    "trash": ({"on_trash": True}, CASE, [{"type": "delete", "path": f"{CASE}/Old"}]),
    "cases": ({"cases": ("Zo*",)}, NFD_CASE, [{"type": "mkdir", "path": f"{NFD_CASE}/x"}]),
}


class TestNoRouteAround:
    """For each policy, every way of sending the same change without a decision ends
    waiting (or refused), and the tree is as it was."""

    @pytest.mark.parametrize("policy", sorted(POLICIES))
    @pytest.mark.parametrize(
        "route", ["plain", "resend", "wake-up", "fault-at-hold", "fault-at-index", "kill"]
    )
    def test_the_change_never_happens_without_a_decision(
        self, rig: Rig, monkeypatch: pytest.MonkeyPatch, policy: str, route: str
    ) -> None:
        settings, case, ops = POLICIES[policy]
        a, b = daemon(rig, "a", **settings), daemon(rig, "b", **settings)
        before = rig.files()
        if route in ("fault-at-hold", "fault-at-index", "kill"):
            target = LeaseKeeper if route != "fault-at-index" else DecisionStore
            name = "hold" if route != "fault-at-index" else "index"
            monkeypatch.setattr(target, name, _raise_once(getattr(target, name)))
            if route == "kill":
                monkeypatch.setattr(LeaseKeeper, "release", lambda self: None)
            assert a.handle(plan_doc(ops, case=case)).verdict is Verdict.NACK
            assert rig.files() == before
            rig.clock.advance(LEASE + 1)
        settle = b.handle(plan_doc(ops, case=case), message_id="m-2", attempt=2)
        assert settle == ACK
        if route == "resend":
            assert a.handle(plan_doc(ops, case=case), message_id="m-3") == ACK
        if route == "wake-up":
            assert wake(a, "p-1", "w-1", case) == ACK
        record = rig.record("p-1")
        assert record is not None and record.state is RecordState.AWAITING_APPROVAL
        assert rig.files() == before
        assert {r["status"] for r in a.answers("p-1") + b.answers("p-1")} == {"awaiting_approval"}


class TestAfterTheDecision:
    """What was approved is what is changed, whatever happens between the decision and each
    step (found by an adversarial review; each failed before its fix)."""

    @pytest.mark.parametrize("spelling", [NFC_CASE, NFD_CASE])
    @pytest.mark.parametrize("change", ["edit", "add"])
    def test_a_change_after_approval_is_seen_in_any_spelling_of_the_case(
        self, rig: Rig, spelling: str, change: str
    ) -> None:
        inbox = rig.root / NFC_CASE / "inbox"  # on disk: NFC
        a = daemon(rig, on_trash=True)
        assert a.handle(plan_doc([{"type": "delete", "path": f"{spelling}/inbox"}], case=spelling))
        approve(rig, "p-1")
        if change == "edit":
            (inbox / "a.pdf").write_text("a person's new, longer version\n")
        else:
            (inbox / "brief.docx").write_text("a person's work\n")
        assert wake(a, "p-1", "w-1", spelling) == ACK
        assert code(a, "p-1") == "tree_changed"
        assert (inbox / "a.pdf").exists()

    def test_a_crash_after_the_journal_and_an_edit_before_the_resume_changes_nothing(
        self, rig: Rig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        a = daemon(rig, on_trash=True)
        assert a.handle(plan_doc([{"type": "delete", "path": f"{CASE}/Old"}])) == ACK
        approve(rig, "p-1")
        monkeypatch.setattr(run_module.Run, "execute", _raise_once(run_module.Run.execute))
        assert wake(a, "p-1", "w-1").verdict is Verdict.NACK  # journal written, no step run
        memo = rig.root / CASE / "Old" / "memo.txt"
        memo.write_text("a person's longer edit of the memo\n")
        assert wake(a, "p-1", "w-1") == ACK
        assert status(a, "p-1") != "applied"
        assert memo.read_text() == "a person's longer edit of the memo\n"

    def test_during_a_key_rotation_a_decision_under_the_other_key_is_never_replaced(
        self, rig: Rig
    ) -> None:
        new, old = KEY, b"previous-approval-key-0123456789"
        a = daemon(rig, min_steps=2, keys=(new, old))
        assert a.handle(plan_doc(moves(3))) == ACK
        assert decide_on(rig, a, REJECT, by="alice", key=old).ours
        with pytest.raises(DecisionRefusedError, match="cannot check"):
            decide_on(rig, a, APPROVE, by="bob", key=new)
        assert wake(a, "p-1", "w-1") == ACK
        assert code(a, "p-1") == "approval_rejected"
        assert (rig.root / CASE / "inbox" / "f0.pdf").exists()


class TestUndo:
    def test_an_undo_is_gated_like_any_plan(self, rig: Rig) -> None:
        a = daemon(rig, min_steps=2)
        assert a.handle(plan_doc(moves(2))) == ACK
        assert status(a, "p-1") == "applied"
        undo = {"undo_of": "p-1", "case_name": CASE, "plan_id": undo_plan_id("p-1")}
        undo["dry_run"] = False
        b = daemon(rig, "b", min_steps=1)  # a stricter policy now: the undo's 2 steps wait
        assert b.handle(json.dumps(undo).encode(), message_id="u-1") == ACK
        assert status(b, undo_plan_id("p-1")) == "awaiting_approval"
        assert (rig.root / CASE / "f0.pdf").exists()
        approve(rig, undo_plan_id("p-1"))
        assert wake(b, undo_plan_id("p-1"), "w-1") == ACK
        assert status(b, undo_plan_id("p-1")) == "applied"
        assert (rig.root / CASE / "inbox" / "f0.pdf").exists()

    def test_an_undo_never_trashes_what_was_put_in_a_folder_since(self, rig: Rig) -> None:
        a = rig.daemon("a")
        assert a.handle(plan_doc([{"type": "mkdir", "path": f"{CASE}/Shared"}])) == ACK
        (rig.root / CASE / "Shared" / "brief.docx").write_text("a person's work\n")
        undo = {"undo_of": "p-1", "case_name": CASE, "plan_id": undo_plan_id("p-1")}
        undo["dry_run"] = False
        assert a.handle(json.dumps(undo).encode(), message_id="u-1") == ACK
        assert status(a, undo_plan_id("p-1")) == "rejected"
        assert code(a, undo_plan_id("p-1")) == "precondition_failed"
        assert (rig.root / CASE / "Shared" / "brief.docx").read_text() == "a person's work\n"

    def test_an_undo_never_trashes_a_written_file_edited_since(self, rig: Rig) -> None:
        a = rig.daemon("a")
        write = {"type": "write", "path": f"{CASE}/note.txt", "content": "draft\n"}
        assert a.handle(plan_doc([write])) == ACK
        (rig.root / CASE / "note.txt").write_text("edited\n")
        undo = {"undo_of": "p-1", "case_name": CASE, "plan_id": undo_plan_id("p-1")}
        undo["dry_run"] = False
        assert a.handle(json.dumps(undo).encode(), message_id="u-1") == ACK
        assert code(a, undo_plan_id("p-1")) == "precondition_failed"
        assert (rig.root / CASE / "note.txt").read_text() == "edited\n"


class TestBudget:
    def test_splitting_a_plan_does_not_walk_around_the_step_threshold(self, rig: Rig) -> None:
        a = daemon(rig, min_steps=4, window_seconds=3600)
        assert a.handle(plan_doc(moves(3), plan_id="p-1")) == ACK
        assert status(a, "p-1") == "applied"
        assert a.handle(plan_doc(moves(2, 3), plan_id="p-2"), message_id="m-2") == ACK
        assert status(a, "p-2") == "awaiting_approval"
        assert "within 1h" in " ".join(a.answers("p-2")[-1]["approval"]["reasons"])
        assert (rig.root / CASE / "inbox" / "f3.pdf").exists()

    def test_a_redelivered_plan_does_not_count_twice_and_the_window_passes(self, rig: Rig) -> None:
        a = daemon(rig, min_steps=4, window_seconds=3600)
        assert a.handle(plan_doc(moves(3), plan_id="p-1")) == ACK
        assert a.handle(plan_doc(moves(3), plan_id="p-1"), message_id="m-9") == ACK
        assert [r["status"] for r in a.answers("p-1")] == ["applied", "applied"]
        rig.clock.advance(3601)
        assert a.handle(plan_doc(moves(2, 3), plan_id="p-2"), message_id="m-2") == ACK
        assert status(a, "p-2") == "applied"

    def test_the_same_sender_across_cases_adds_up_too(self, rig: Rig) -> None:
        a = daemon(rig, min_steps=2, window_seconds=3600)
        first = plan_doc(moves(2), plan_id="p-1", requested_by="agent-7")
        assert a.handle(first) == ACK
        assert status(a, "p-1") == "applied"
        ops = [{"type": "mkdir", "path": f"{NFC_CASE}/x"}]
        # mkdir is no file step: it fits; a move is one and does not.
        mv = {"type": "move", "from": f"{NFC_CASE}/inbox/a.pdf", "to": f"{NFC_CASE}/a.pdf"}
        second = plan_doc([*ops, mv], plan_id="p-2", case=NFC_CASE, requested_by="agent-7")
        assert a.handle(second, message_id="m-2") == ACK
        assert status(a, "p-2") == "awaiting_approval"


class TestDecisions:
    def test_a_decision_signed_with_another_key_never_applies_the_plan(self, rig: Rig) -> None:
        a = daemon(rig, min_steps=2)
        assert a.handle(plan_doc(moves(3))) == ACK
        approve(rig, "p-1", key=b"someone-elses-key-00000000000000")
        assert wake(a, "p-1", "w-1") == ACK
        assert rig.record("p-1").state is RecordState.AWAITING_APPROVAL  # type: ignore[union-attr]
        assert (rig.root / CASE / "inbox" / "f0.pdf").exists()

    def test_a_forged_decision_does_not_keep_an_expired_plan_waiting(self, rig: Rig) -> None:
        a = daemon(rig, min_steps=2)
        assert a.handle(plan_doc(moves(3))) == ACK
        approve(rig, "p-1", key=b"someone-elses-key-00000000000000")
        rig.clock.advance(3601)
        assert wake(a, "p-1", "w-1") == ACK  # the daemon's expiry sweep sends this
        assert code(a, "p-1") == "approval_expired"
        assert a.answers("p-1")[-1]["in_reply_to"] == "m-1"  # the agent's own message
        assert (rig.root / CASE / "inbox" / "f0.pdf").exists()

    def test_the_waiting_record_names_the_keys_that_can_decide(self, rig: Rig) -> None:
        a = daemon(rig, min_steps=2)
        assert a.handle(plan_doc(moves(3))) == ACK
        record = rig.record("p-1")
        assert record is not None and record.approval is not None
        assert record.approval["key_ids"] == [key_id(KEY)]

    def test_an_approved_plan_is_audited_with_the_stored_plan_and_the_decider(
        self, rig: Rig
    ) -> None:
        a = daemon(rig, min_steps=2)
        assert a.handle(plan_doc(moves(3), reason="tidy", requested_by="agent-1")) == ACK
        approve(rig, "p-1", by="supervisor@firm.example")
        data = json.dumps(wakeup_document("p-1", CASE, "mallory")).encode()
        assert a.handle(data, message_id="w-1") == ACK
        assert status(a, "p-1") == "applied"
        [audited] = [r for r in a.audit.records.values() if r["message"]["id"] == "w-1"]
        assert audited["plan"]["operations"] == moves(3)
        assert (audited["requested_by"], audited["reason"]) == ("agent-1", "tidy")
        assert audited["decision"]["by"] == "supervisor@firm.example"

    @pytest.mark.parametrize("given", ["", "   ", "0", "e", "not-hex-at-all", "1234567"])
    def test_an_empty_or_short_digest_decides_nothing(self, rig: Rig, given: str) -> None:
        a = daemon(rig, min_steps=2)
        assert a.handle(plan_doc(moves(3))) == ACK
        record = rig.record("p-1")
        assert record is not None and record.approval is not None
        shown = str(record.approval["changes_digest"])
        woken: list[Any] = []
        short = shown[: min(len(given.strip()), 7)]  # a true start, but too short to pin
        for prefix in {given, short}:
            with pytest.raises(DecisionRefusedError, match="not the start of a changes_digest"):
                decide_on(rig, a, APPROVE, by="script", digest=prefix, woken=woken)
        assert DecisionStore(rig.store).read("p-1") is None and woken == []
        # As a person may copy it:
        decided = decide_on(rig, a, APPROVE, by="ops", digest=shown[:12].upper())
        assert decided.ours and decided.standing.changes_digest == shown

    def test_a_resend_of_a_waiting_plan_is_answered_to_its_own_sender(self, rig: Rig) -> None:
        """An agent restarted under a new client_id resends its waiting plan: the answer
        names the resend and goes to the resender, not to the client that sent it first."""
        a = daemon(rig, min_steps=2)
        assert a.handle(plan_doc(moves(3)), message_id="m-1", client_id="agent-old") == ACK
        assert a.handle(plan_doc(moves(3)), message_id="m-2", client_id="agent-new") == ACK
        first, again = a.results.answers
        assert (first.result["in_reply_to"], first.extra) == ("m-1", {"client_id": "agent-old"})
        assert again.result["status"] == "awaiting_approval"
        assert (again.result["in_reply_to"], again.extra) == ("m-2", {"client_id": "agent-new"})
        [audited] = [r for r in a.audit.records.values() if r["message"]["id"] == "m-2"]
        assert audited["plan"]["operations"] == moves(3)

    @pytest.mark.parametrize("verdict", [APPROVE, REJECT])
    def test_deciding_again_what_a_decision_already_carried_out_is_told_not_refused(
        self, rig: Rig, verdict: str
    ) -> None:
        a = daemon(rig, min_steps=2)
        assert a.handle(plan_doc(moves(3))) == ACK
        store, woken = DecisionStore(rig.store), []

        def decide_as(who: str, asked: str, digest: str | None = None) -> Any:
            return decide_on(rig, a, asked, by=who, digest=digest, woken=woken)

        assert decide_as("alice", verdict).ours
        assert wake(a, "p-1", "w-1") == ACK
        assert status(a, "p-1") == ("applied" if verdict == APPROVE else "rejected")
        woken.clear()
        again = decide_as("bob", verdict)  # bob was a moment late, asking the same
        assert (again.ours, again.agrees, again.standing.by) == (False, True, "alice")
        assert woken == []  # nothing written, nobody woken
        other = REJECT if verdict == APPROVE else APPROVE
        with pytest.raises(DecisionRefusedError, match="is already"):
            decide_as("bob", other)
        with pytest.raises(DecisionRefusedError, match="is already"):
            decide_as("bob", verdict, digest="00000000")  # not the changes that were decided
        assert verify_decision((KEY,), store.read("p-1")).by == "alice"

    def test_a_plan_rejected_for_a_changed_tree_is_not_reported_as_approved_again(
        self, rig: Rig
    ) -> None:
        a = daemon(rig, min_steps=2)
        assert a.handle(plan_doc(moves(3))) == ACK
        approve(rig, "p-1", by="alice")
        (rig.root / CASE / "inbox" / "f0.pdf").write_text("edited since it was shown\n")
        assert wake(a, "p-1", "w-1") == ACK
        assert status(a, "p-1") == "rejected"
        with pytest.raises(DecisionRefusedError, match="already rejected"):
            decide_on(rig, a, APPROVE, by="bob")

    def test_a_wake_up_naming_another_case_is_refused_and_any_spelling_of_its_own_is_not(
        self, rig: Rig
    ) -> None:
        a = daemon(rig, min_steps=1)
        ops = [
            {"type": "mkdir", "path": f"{NFD_CASE}/new"},
            {"type": "move", "from": f"{NFD_CASE}/inbox/a.pdf", "to": f"{NFD_CASE}/new/a.pdf"},
        ]
        assert a.handle(plan_doc(ops, case=NFD_CASE)) == ACK
        approve(rig, "p-1")
        assert wake(a, "p-1", "w-1", case=CASE) == ACK
        [refusal] = [x.result for x in a.results.answers if x.result["plan_id"] != "p-1"]
        assert refusal["errors"][0]["code"] == "schema_violation"
        assert "names its plan's case" in refusal["errors"][0]["message"]
        assert rig.record("p-1").state is RecordState.AWAITING_APPROVAL  # type: ignore[union-attr]
        assert wake(a, "p-1", "w-2", case=NFC_CASE) == ACK  # the same case, spelt otherwise
        assert status(a, "p-1") == "applied"
        assert (rig.root / NFC_CASE / "new" / "a.pdf").exists()

    def test_a_wake_up_with_extra_keys_is_refused(self, rig: Rig) -> None:
        a = daemon(rig, min_steps=2)
        assert a.handle(plan_doc(moves(3))) == ACK
        approve(rig, "p-1")
        wakeup = {**wakeup_document("p-1", CASE, "ops"), "reason": "trust me"}
        assert a.handle(json.dumps(wakeup).encode(), message_id="w-1") == ACK
        [refusal] = [x.result for x in a.results.answers if x.result["plan_id"] != "p-1"]
        assert refusal["errors"][0]["code"] == "schema_violation"
        assert rig.record("p-1").state is RecordState.AWAITING_APPROVAL  # type: ignore[union-attr]


class TestSharedBuckets:
    @pytest.mark.parametrize("which", ["FILEOPS_STATE_BUCKET", "FILEOPS_AUDIT_BUCKET"])
    def test_a_projects_bucket_that_is_the_state_or_audit_bucket_refuses_to_start(
        self, which: str
    ) -> None:
        env = {
            "FILEOPS_PROJECT": "p",
            "FILEOPS_STATE_BUCKET": "state",
            "FILEOPS_AUDIT_BUCKET": "audit",
            "FILEOPS_EXECUTOR": "gcs-api",
            "FILEOPS_PROJECTS_BUCKET": "state" if which.endswith("STATE_BUCKET") else "audit",
        }
        with pytest.raises(ConfigError, match=which):
            Config.from_env(env)

    def test_an_unknown_objects_move_setting_refuses_to_start(self) -> None:
        env = {
            "FILEOPS_PROJECT": "p",
            "FILEOPS_STATE_BUCKET": "s",
            "FILEOPS_GCS_OBJECTS_MOVE": "on",
        }
        with pytest.raises(ConfigError, match="FILEOPS_GCS_OBJECTS_MOVE"):
            Config.from_env(env)

    def test_the_mounted_bucket_is_read_from_the_mount_table(self, tmp_path: Path) -> None:
        mounts = tmp_path / "mounts"
        mounts.write_text(
            f"proc /proc proc rw 0 0\nfirm-state {tmp_path} fuse.gcsfuse rw,nosuid 0 0\n"
        )
        assert mounted_bucket(str(tmp_path), str(mounts)) == "firm-state"
        assert mounted_bucket(str(tmp_path / "other"), str(mounts)) == ""


def _raise_once(real: Any) -> Any:
    """``real``, except that its first call fails as a crash or a store outage would."""
    calls = {"n": 0}

    def once(self: Any, *args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the daemon died here")
        return real(self, *args)

    return once
