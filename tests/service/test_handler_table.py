"""The handler's settle table, in process and without an emulator: how each kind of message
ends (ACK, NACK or WAIT, and why), what is answered, what the tree and the ledger hold after.

The ledger runs on the in-memory store, results and audit records go to in-memory sinks, the
projects root is a real folder. Two daemons are two handlers (own worker id and state folder)
sharing one store and one hand-moved clock."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.api_core.exceptions import ServiceUnavailable

from fileops_daemon.contract.plan import parse_plan
from fileops_daemon.contract.signing import sign_message
from fileops_daemon.core.store import case_lock
from fileops_daemon.core.undo import undo_plan_id
from fileops_daemon.service import intake as intake_module
from fileops_daemon.service.config import Config
from fileops_daemon.service.delivery import Delivery
from fileops_daemon.service.handler import (
    MAKE_WAY_SECONDS,
    Disposition,
    PlanHandler,
    Reason,
)
from fileops_daemon.service.ledger import Claimed, Ledger, Record, RecordState
from fileops_daemon.service.ledger_store import LedgerStore
from fileops_daemon.service.memstore import MemoryLedgerStore
from tests.service.stand_ins import FaultyStore, ManualClock, MemoryAudit, MemoryResults
from tests.support import CASE, SEED_OPS, notes_ops, plan_doc, snapshot

LEASE = 30.0
#: How often a plan waiting on another daemon looks again: the lease / 10, within [1, 10].
RECHECK = 3.0

ACK = Disposition.ack()


@dataclass
class Daemon:
    handler: PlanHandler
    ledger: Ledger
    results: MemoryResults
    audit: MemoryAudit

    def handle(
        self,
        document: dict[str, Any] | bytes,
        *,
        message_id: str = "m-1",
        attempt: int = 1,
        ordering_key: str = "",
        **attributes: str,
    ) -> Disposition:
        if isinstance(document, bytes):
            data = document
        else:
            data = json.dumps(document).encode()
            attributes = {
                "plan_id": document["plan_id"],
                "case_name": document["case_name"],
                **attributes,
            }
        return self.handler.handle(
            Delivery(
                data=data,
                attributes=attributes,
                message_id=message_id,
                delivery_attempt=attempt,
                ordering_key=ordering_key,
            )
        )

    def answers(self, plan_id: str) -> list[dict[str, Any]]:
        return self.results.of(plan_id)

    def answer(self, plan_id: str) -> dict[str, Any]:
        [result] = self.answers(plan_id)
        return result


@dataclass
class Rig:
    tmp: Path
    root: Path
    store: MemoryLedgerStore = field(default_factory=MemoryLedgerStore)
    clock: ManualClock = field(default_factory=ManualClock)

    def daemon(self, name: str = "a", store: LedgerStore | None = None, **config: Any) -> Daemon:
        settings: dict[str, Any] = {
            "project": "unit",
            "state_bucket": "unused",
            "audit_bucket": "unused",
            "projects_root": str(self.root),
            "state_dir": str(self.tmp / f"state-{name}"),
            "lease_seconds": LEASE,
            "worker_id": f"daemon-{name}",
            "apply_parallelism": 1,
            "retry_attempts": 2,
            "retry_initial_wait": 0.0,
            "retry_max_wait": 0.0,
            **config,
        }
        ledger = Ledger(store or self.store, settings["worker_id"], LEASE, clock=self.clock)
        results, audit = MemoryResults(), MemoryAudit()
        return Daemon(
            PlanHandler(Config(**settings), ledger, results, audit), ledger, results, audit
        )

    def ledger(self, name: str) -> Ledger:
        """Another daemon's ledger, for setting the scene."""
        return Ledger(self.store, f"daemon-{name}", LEASE, clock=self.clock)

    def record(self, plan_id: str) -> Record | None:
        return self.ledger("reader").read(plan_id)

    def tree(self) -> dict[str, tuple[str, ...]]:
        """Everything below the projects root, the daemon's own folders included."""
        return snapshot(self.root)

    def files(self) -> dict[str, tuple[str, ...]]:
        """The case as its users see it (without the daemon's trash and staging)."""
        return snapshot(self.root, skip_work_dirs=True)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    root = tmp_path / "projects"
    case = root / CASE
    (case / "uncategorized").mkdir(parents=True)
    (case / "Medical Records").mkdir()
    (case / "Investigation").mkdir()
    (case / "uncategorized" / "file1.pdf").write_text("one\n")
    return Rig(tmp_path, root)


@pytest.fixture
def a(rig: Rig) -> Daemon:
    return rig.daemon("a")


SEED = plan_doc(SEED_OPS, plan_id="p-1")
SEED_DRY = plan_doc(SEED_OPS, plan_id="p-1", dry_run=True)
OTHER = plan_doc([{"type": "mkdir", "path": f"{CASE}/later"}], plan_id="p-2")
NOTES = plan_doc(notes_ops(5), plan_id="p-3")
MOVED = f"{CASE}/Medical Records/file1.pdf"


def codes(result: dict[str, Any]) -> list[str]:
    return [error["code"] for error in result["errors"]]


def seize_case(rig: Rig, plan_id: str, owner: str = "b", *, release: bool = False) -> None:
    """Another daemon takes the case for ``plan_id`` and claims it (its lease live)."""
    ledger = rig.ledger(owner)
    ledger.acquire_case(CASE, plan_id)
    outcome = ledger.claim(plan_id, "their-digest", CASE)
    assert isinstance(outcome, Claimed)
    if release:
        ledger.release(outcome.record)


class TestAnswered:
    def test_a_valid_dry_run_is_answered_once_and_changes_nothing(
        self, rig: Rig, a: Daemon
    ) -> None:
        before = rig.tree()
        assert a.handle(SEED_DRY) == ACK
        result = a.answer("p-1")
        assert (result["status"], result["dry_run"], codes(result)) == ("planned", True, [])
        assert len(result["changes"]) == 2
        assert rig.tree() == before
        assert rig.store.names("plans/") == []  # dry runs are not recorded
        assert len(a.audit.records) == 1

    def test_a_valid_apply_is_answered_once_changes_the_tree_and_is_recorded(
        self, rig: Rig, a: Daemon
    ) -> None:
        before = rig.tree()
        assert a.handle(SEED) == ACK
        result = a.answer("p-1")
        assert (result["status"], result["dry_run"], codes(result)) == ("applied", False, [])
        after = rig.tree()
        assert MOVED in after and f"{CASE}/uncategorized/file1.pdf" not in after
        assert (
            f"{CASE}/Investigation/photos" in after and f"{CASE}/Investigation/photos" not in before
        )
        record = rig.record("p-1")
        assert record is not None and record.state is RecordState.DONE
        assert record.result == result and record.undo is not None
        assert (record.owner, record.lease_expires_at) == ("daemon-a", 0.0)
        assert len(a.audit.records) == 1

    def test_a_dry_run_of_an_applied_plan_answers_with_the_recorded_result(self, a: Daemon) -> None:
        a.handle(SEED)
        assert a.handle(SEED_DRY) == ACK
        applied, again = a.answers("p-1")
        assert again == applied

    def test_the_result_is_routed_to_the_client_that_tagged_the_plan(self, a: Daemon) -> None:
        assert a.handle(SEED_DRY, client_id="agent-7") == ACK
        [answer] = a.results.answers
        assert answer.extra == {"client_id": "agent-7"}
        assert json.loads(answer.data) == answer.result  # published as encoded once


class TestRefused:
    """Messages that are not valid plans are answered (acked) with a rejected result under the
    daemon's own name for them, unrouted, and nothing is claimed or changed."""

    @pytest.mark.parametrize(
        ("data", "attributes", "code"),
        [
            (b"{not json", {}, "invalid_json"),
            (b"\xff\xfe\x00", {}, "invalid_json"),
            (json.dumps({"plan_id": "p-1"}).encode(), {}, "schema_violation"),
            (
                json.dumps(plan_doc([{"type": "teleport", "path": f"{CASE}/x"}])).encode(),
                {},
                "schema_violation",
            ),
            (json.dumps(SEED).encode(), {"plan_id": "p-other"}, "schema_violation"),
            (json.dumps(SEED).encode(), {"case_name": "Other-Case"}, "schema_violation"),
            (json.dumps(SEED).encode(), {"dry_run": "true"}, "schema_violation"),
        ],
        ids=[
            "invalid-json",
            "not-utf8",
            "missing-fields",
            "unknown-operation",
            "plan-id-attribute-disagrees",
            "case-attribute-disagrees",
            "dry-run-attribute-disagrees",
        ],
    )
    def test_an_invalid_message_is_acked_with_a_rejected_result(
        self,
        rig: Rig,
        a: Daemon,
        data: bytes,
        attributes: dict[str, str],
        code: str,
    ) -> None:
        before = rig.tree()
        verdict = a.handle(data, message_id="m/1", client_id="agent-7", **attributes)
        assert verdict == ACK
        [answer] = a.results.answers
        assert answer.result["plan_id"] == "unidentified-m_1"
        assert (answer.result["status"], codes(answer.result)) == ("rejected", [code])
        assert answer.extra == {}  # a sender cannot route words to another agent's inbox
        assert rig.tree() == before and rig.store.names() == []

    @pytest.mark.parametrize(
        ("path", "code"),
        [("Other-Case/x", "path_outside_case"), (f"{CASE}/../x", "path_invalid")],
    )
    def test_a_plan_with_a_bad_path_is_rejected_under_its_own_name(
        self, rig: Rig, a: Daemon, path: str, code: str
    ) -> None:
        before = rig.tree()
        assert a.handle(plan_doc([{"type": "mkdir", "path": path}], plan_id="p-9")) == ACK
        result = a.answer("p-9")
        assert (result["status"], codes(result)) == ("rejected", [code])
        assert rig.tree() == before

    def test_a_bug_while_checking_is_answered_internal_error(
        self, rig: Rig, a: Daemon, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def broken(data: bytes, limits: object = None) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr(intake_module, "parse_message", broken)
        assert a.handle(SEED) == ACK
        assert codes(a.answer("unidentified-m-1")) == ["internal_error"]
        assert rig.store.names() == []

    def test_with_signing_on_an_unsigned_plan_is_refused_and_a_signed_one_applied(
        self, rig: Rig
    ) -> None:
        key = b"k" * 32
        signed = rig.daemon("a", signing_keys=(key,))
        assert signed.handle(SEED) == ACK
        assert codes(signed.answer("unidentified-m-1")) == ["signature_invalid"]
        attributes = {"plan_id": "p-1", "case_name": CASE}
        data = json.dumps(SEED).encode()
        signature = sign_message(key, data, attributes)
        assert signed.handle(data, message_id="m-2", signature=signature, **attributes) == ACK
        assert signed.answer("p-1")["status"] == "applied"

    def test_when_the_audit_fails_for_a_refusal_the_fault_escapes_to_be_nacked(
        self, a: Daemon
    ) -> None:
        # The audit record is written while the result is published: the refusal is out, but
        # the message is not done until its audit record is; the redelivery writes that
        # record, of that very answer, and publishes nothing more.
        a.audit.down = True
        with pytest.raises(ServiceUnavailable):
            a.handle(b"{not json")
        assert a.audit.records == {}
        [published] = [answer.result for answer in a.results.answers]
        a.audit.down = False
        assert a.handle(b"{not json", attempt=2) == ACK
        assert [answer.result for answer in a.results.answers] == [published]
        assert [record["result"] for record in a.audit.records.values()] == [published]


class TestIdempotency:
    def test_a_redelivered_done_plan_is_answered_again_and_not_applied_twice(
        self, rig: Rig, a: Daemon
    ) -> None:
        assert a.handle(SEED) == ACK
        applied = rig.tree()
        recorded = rig.record("p-1")
        assert a.handle(SEED, attempt=2) == ACK
        assert a.handle(SEED, message_id="m-2") == ACK  # a second message for the plan
        first, redelivered, second = a.answers("p-1")
        assert first["in_reply_to"] == "m-1" and "replay" not in first
        assert redelivered == first  # the same message again: the same answer, no replay
        # Another message for the finished plan: the stored result, marked as a replay that
        # answers that message and changed nothing; the ledger's copy is left as it was.
        assert second == first | {"in_reply_to": "m-2", "replay": True, "replay_of": "m-1"}
        assert rig.tree() == applied
        assert rig.record("p-1") == recorded  # not even rewritten
        assert recorded is not None and recorded.result == first

    def test_a_done_plan_redelivered_to_another_daemon_is_answered_from_the_ledger(
        self, rig: Rig, a: Daemon
    ) -> None:
        a.handle(SEED)
        applied = rig.tree()
        b = rig.daemon("b")
        assert b.handle(SEED, attempt=2) == ACK
        assert b.answer("p-1") == a.answer("p-1")
        assert rig.tree() == applied

    @pytest.mark.parametrize("dry_run", [False, True], ids=["apply", "dry-run"])
    def test_a_plan_id_reused_for_other_operations_is_an_idempotency_conflict(
        self, rig: Rig, a: Daemon, dry_run: bool
    ) -> None:
        a.handle(SEED)
        applied, recorded = rig.tree(), rig.record("p-1")
        reused = plan_doc([{"type": "mkdir", "path": f"{CASE}/x"}], plan_id="p-1", dry_run=dry_run)
        assert a.handle(reused, message_id="m-2") == ACK
        _, conflict = a.answers("p-1")
        assert (conflict["status"], codes(conflict)) == ("rejected", ["idempotency_conflict"])
        assert rig.tree() == applied and rig.record("p-1") == recorded

    def test_a_conflict_with_a_plan_still_claimed_elsewhere_is_answered_too(
        self, rig: Rig, a: Daemon
    ) -> None:
        seize_case(rig, "p-1")  # claimed under another digest, lease live
        before = rig.tree()
        assert a.handle(SEED) == ACK
        assert codes(a.answer("p-1")) == ["idempotency_conflict"]
        assert rig.tree() == before


class TestWaitingForOthers:
    def test_a_case_leased_by_another_daemon_waits_and_looks_again(
        self, rig: Rig, a: Daemon
    ) -> None:
        seize_case(rig, "p-other")
        before = rig.tree()
        verdict = a.handle(SEED)
        assert verdict == Disposition.wait(Reason.CASE_HELD_ELSEWHERE, after=RECHECK)
        assert a.results.answers == [] and rig.tree() == before
        assert rig.record("p-1") is None  # not even claimed

    def test_with_an_ordering_key_it_makes_way_instead_of_being_held(
        self, rig: Rig, a: Daemon
    ) -> None:
        seize_case(rig, "p-other")
        verdict = a.handle(SEED, ordering_key=CASE)
        assert verdict == Disposition.nack(Reason.CASE_HELD_ELSEWHERE, after=RECHECK)

    def test_an_unfinished_plan_elsewhere_holds_the_case_until_it_is_done(
        self, rig: Rig, a: Daemon
    ) -> None:
        seize_case(rig, "p-other", release=True)  # nacked there; it will come back
        assert a.handle(SEED).reason is Reason.CASE_HELD_ELSEWHERE
        theirs = rig.ledger("b")
        record = theirs.read("p-other")
        assert record is not None
        theirs.complete(theirs.renew(record), {"status": "applied"})
        assert a.handle(SEED) == ACK and a.answer("p-1")["status"] == "applied"

    def test_a_plan_another_daemon_is_applying_waits_for_its_result(
        self, rig: Rig, a: Daemon
    ) -> None:
        b = rig.ledger("b")
        b.acquire_case(CASE, "p-1")
        digest = parse_plan(SEED).digest
        assert isinstance(b.claim("p-1", digest, CASE), Claimed)
        before = rig.tree()
        assert a.handle(SEED) == Disposition.wait(Reason.PLAN_HELD_ELSEWHERE, after=RECHECK)
        assert a.results.answers == [] and rig.tree() == before

    def test_a_plan_whose_lease_ran_out_elsewhere_is_taken_over_and_applied(
        self, rig: Rig, a: Daemon
    ) -> None:
        b = rig.ledger("b")
        b.acquire_case(CASE, "p-1")
        digest = parse_plan(SEED).digest
        b.claim("p-1", digest, CASE)
        rig.clock.advance(LEASE + 1)
        assert a.handle(SEED, attempt=2) == ACK
        assert a.answer("p-1")["status"] == "applied"
        record = rig.record("p-1")
        assert record is not None
        assert (record.owner, record.attempts, record.takeovers) == ("daemon-a", 2, 1)

    @pytest.mark.parametrize("ordering_key", ["", CASE], ids=["unkeyed", "keyed"])
    def test_a_plan_of_a_case_this_daemon_is_handling_waits_for_it_here(
        self, a: Daemon, ordering_key: str
    ) -> None:
        a.handler.sequencer.enter(CASE, "p-running")
        verdict = a.handle(SEED, ordering_key=ordering_key)
        assert verdict == Disposition.wait(Reason.CASE_BUSY, case=CASE)

    def test_a_local_apply_holding_the_case_makes_the_plan_wait_and_release_its_lease(
        self, rig: Rig, a: Daemon
    ) -> None:
        with case_lock(str(rig.tmp / "state-a"), CASE):
            verdict = a.handle(SEED)
        assert verdict == Disposition.wait(Reason.PLAN_BUSY_LOCALLY, after=RECHECK)
        record = rig.record("p-1")
        assert record is not None
        assert (record.state, record.lease_expires_at) == (RecordState.CLAIMED, 0.0)
        assert a.results.answers == []
        assert a.handle(SEED, attempt=2) == ACK


class TestFaults:
    def test_a_store_fault_is_nacked_after_a_pause_and_blocks_the_case(self, rig: Rig) -> None:
        down = [True]
        store = FaultyStore(
            rig.store, breaks=lambda op, name: down[0] and name.startswith("plans/")
        )
        a = rig.daemon("a", store=store)
        before = rig.tree()
        assert a.handle(SEED) == Disposition.nack(Reason.TRANSIENT_FAULT, after=MAKE_WAY_SECONDS)
        assert a.results.answers == [] and rig.tree() == before
        # A later plan of the case waits for this one's redelivery.
        assert a.handle(OTHER, message_id="m-2") == Disposition.wait(
            Reason.CASE_BLOCKED, case=CASE, after=RECHECK
        )
        down[0] = False
        assert a.handle(SEED, attempt=2) == ACK
        assert a.handle(OTHER, message_id="m-2", attempt=2) == ACK
        assert [a.answer(p)["status"] for p in ("p-1", "p-2")] == ["applied", "applied"]

    def test_a_fault_on_the_last_delivery_attempt_does_not_block_the_case(self, rig: Rig) -> None:
        store = FaultyStore(rig.store, breaks=lambda op, name: name == "plans/p-1.json")
        a = rig.daemon("a", store=store)
        last = a.handler.config.max_delivery_attempts
        assert a.handle(SEED, attempt=last).reason is Reason.TRANSIENT_FAULT
        assert a.handle(OTHER, message_id="m-2") == ACK

    def test_an_audit_outage_after_the_apply_is_nacked_and_the_redelivery_audits_it(
        self, rig: Rig, a: Daemon
    ) -> None:
        # The audit record is written while the result is published (off the agent's wait):
        # an audit outage nacks the message, and its redelivery audits the answer already
        # published, once.
        a.audit.down = True
        assert a.handle(SEED) == Disposition.nack(Reason.TRANSIENT_FAULT, after=MAKE_WAY_SECONDS)
        applied = rig.tree()
        assert MOVED in applied and a.audit.records == {}
        record = rig.record("p-1")
        assert record is not None and record.state is RecordState.DONE
        assert a.handle(OTHER, message_id="m-2").reason is Reason.CASE_BLOCKED
        a.audit.down = False
        assert a.handle(SEED, attempt=2) == ACK
        assert a.answer("p-1") == record.result  # published once
        assert [r["result"] for r in a.audit.records.values()] == [record.result]
        assert rig.tree() == applied

    def test_a_redelivery_elsewhere_after_an_audit_outage_answers_the_recorded_result(
        self, rig: Rig, a: Daemon
    ) -> None:
        a.audit.down = True
        assert a.handle(SEED).reason is Reason.TRANSIENT_FAULT
        record = rig.record("p-1")
        assert record is not None
        b = rig.daemon("b")
        assert b.handle(SEED, attempt=2) == ACK
        assert a.answer("p-1") == b.answer("p-1") == record.result
        assert [r["result"] for r in b.audit.records.values()] == [record.result]

    @pytest.mark.parametrize("lost_at", [2, 3], ids=["checkpoint", "completion"])
    def test_a_lease_lost_mid_apply_is_nacked_and_left_to_the_new_owner(
        self, rig: Rig, lost_at: int
    ) -> None:
        writes: list[str] = []
        thief = rig.ledger("b")

        def take_over(name: str, generation: int | None) -> None:
            writes.append(name)
            # The record's writes: the claim, a checkpoint (before the folder's delete), then
            # the completion (which carries the final checkpoint). The thief takes the plan
            # over just before write ``lost_at``.
            if writes.count("plans/p-3.json") == lost_at:
                rig.clock.advance(LEASE + 1)
                record = thief.read("p-3")
                assert record is not None
                assert isinstance(thief.claim("p-3", record.digest, CASE, record), Claimed)

        a = rig.daemon("a", store=FaultyStore(rig.store, before_write=take_over))
        assert a.handle(NOTES) == Disposition.nack(Reason.LEASE_LOST)
        assert a.results.answers == []
        record = rig.record("p-3")
        assert record is not None
        assert (record.owner, record.state, record.attempts) == (
            "daemon-b",
            RecordState.CLAIMED,
            2,
        )
        assert record.lease_expires_at > rig.clock.now  # not released: it is theirs
        assert a.handle(OTHER, message_id="m-2").reason is Reason.CASE_BLOCKED

    def test_a_hand_over_pauses_releases_the_lease_and_another_daemon_resumes(
        self, rig: Rig, a: Daemon
    ) -> None:
        before = rig.tree()
        a.handler.hand_over()
        assert a.handle(SEED) == Disposition.nack(Reason.HANDED_OVER)
        record = rig.record("p-1")
        assert record is not None and record.lease_expires_at == 0.0
        assert rig.tree() == before and a.results.answers == []
        b = rig.daemon("b")
        assert b.handle(SEED, attempt=2) == ACK
        assert b.answer("p-1")["status"] == "applied"
        assert rig.record("p-1").takeovers == 1  # type: ignore[union-attr]


class TestUndo:
    def test_an_applied_plan_is_undone_by_request(self, rig: Rig, a: Daemon) -> None:
        before = rig.files()
        a.handle(SEED)
        assert rig.files() != before
        undo_id = a.answer("p-1")["undo_plan_id"]
        request = {"undo_of": "p-1", "case_name": CASE, "plan_id": undo_id, "dry_run": False}
        assert a.handle(json.dumps(request).encode(), message_id="m-2") == ACK
        assert a.answer(undo_id)["status"] == "applied"
        assert rig.files() == before

    def test_an_undo_of_a_plan_never_applied_is_refused(self, rig: Rig, a: Daemon) -> None:
        request = {
            "undo_of": "p-404",
            "case_name": CASE,
            "plan_id": undo_plan_id("p-404"),
            "dry_run": False,
        }
        assert a.handle(json.dumps(request).encode()) == ACK
        [answer] = a.results.answers
        assert codes(answer.result) == ["undo_unavailable"]

    def test_an_undo_under_a_made_up_plan_id_is_refused_as_forged(self, a: Daemon) -> None:
        a.handle(SEED)
        request = {"undo_of": "p-1", "case_name": CASE, "plan_id": "u-1", "dry_run": False}
        assert a.handle(json.dumps(request).encode(), message_id="m-2") == ACK
        assert codes(a.answer("unidentified-m-2")) == ["undo_forged"]
