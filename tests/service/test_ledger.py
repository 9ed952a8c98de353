"""The ledger's contract on the in-memory store (same generation rules as GCS): claims,
conflicts, takeovers, renewals, release and completion, the case lease, and what a record
looks like when stored. No emulator: each test takes milliseconds."""

from __future__ import annotations

import json

import pytest
from google.api_core.exceptions import ServiceUnavailable

from fileops_daemon.service.ledger import (
    CaseHeld,
    CaseLease,
    Claimed,
    Completed,
    Conflict,
    Held,
    LeaseLostError,
    Ledger,
    LedgerCorruptError,
    Record,
    RecordState,
)
from fileops_daemon.service.ledger_store import (
    GenerationMismatchError,
    Stored,
    UnstableObjectError,
)
from fileops_daemon.service.memstore import MemoryLedgerStore
from tests.service.stand_ins import FaultyStore, ManualClock

LEASE = 30.0
ABANDON = 900.0
CASE = "Case-A"
RESULT = {"plan_id": "p-1", "status": "applied"}


@pytest.fixture
def store() -> MemoryLedgerStore:
    return MemoryLedgerStore()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def daemon(store: object, clock: ManualClock, name: str) -> Ledger:
    """One daemon's view of the shared ledger."""
    return Ledger(store, f"worker-{name}", LEASE, clock=clock, abandon_seconds=ABANDON)  # type: ignore[arg-type]


@pytest.fixture
def a(store: MemoryLedgerStore, clock: ManualClock) -> Ledger:
    return daemon(store, clock, "a")


@pytest.fixture
def b(store: MemoryLedgerStore, clock: ManualClock) -> Ledger:
    return daemon(store, clock, "b")


def claimed(ledger: Ledger, plan_id: str = "p-1", digest: str = "d-1") -> Record:
    outcome = ledger.claim(plan_id, digest, CASE)
    assert isinstance(outcome, Claimed), outcome
    return outcome.record


def stored_document(store: MemoryLedgerStore, name: str) -> dict[str, object]:
    found = store.read(name)
    assert found is not None
    document: dict[str, object] = json.loads(found.data)
    return document


class TestMemoryStoreKeepsGcsGenerationRules:
    def test_every_write_makes_a_new_higher_generation(self, store: MemoryLedgerStore) -> None:
        first = store.write("x", b"1", content_type="text/plain", if_generation_match=0)
        second = store.write("x", b"2", content_type="text/plain", if_generation_match=first)
        other = store.write("y", b"3", content_type="text/plain", if_generation_match=None)
        assert 0 < first < second < other
        assert store.read("x") == Stored(b"2", second)

    def test_a_write_naming_a_stale_generation_changes_nothing(
        self, store: MemoryLedgerStore
    ) -> None:
        first = store.write("x", b"1", content_type="text/plain", if_generation_match=0)
        second = store.write("x", b"2", content_type="text/plain", if_generation_match=first)
        for stale in (0, first, second + 100):
            with pytest.raises(GenerationMismatchError):
                store.write("x", b"3", content_type="text/plain", if_generation_match=stale)
        assert store.read("x") == Stored(b"2", second)

    def test_creating_needs_generation_zero_and_a_missing_object_reads_as_none(
        self, store: MemoryLedgerStore
    ) -> None:
        assert store.read("x") is None
        with pytest.raises(GenerationMismatchError):
            store.write("x", b"1", content_type="text/plain", if_generation_match=5)
        assert store.read("x") is None
        assert store.names() == []


class TestClaim:
    def test_the_first_claim_creates_the_record_with_a_lease(
        self, a: Ledger, store: MemoryLedgerStore, clock: ManualClock
    ) -> None:
        outcome = a.claim("p-1", "d-1", CASE)
        assert isinstance(outcome, Claimed)
        assert not outcome.takeover and outcome.previous_owner is None
        record = outcome.record
        assert record.state is RecordState.CLAIMED
        assert (record.owner, record.attempts, record.takeovers) == ("worker-a", 1, 0)
        assert record.lease_expires_at == clock.now + LEASE
        assert record == a.read("p-1")
        assert store.names() == ["plans/p-1.json"]

    def test_a_plan_with_a_live_lease_is_held_for_everyone_its_owner_included(
        self, a: Ledger, b: Ledger, clock: ManualClock
    ) -> None:
        record = claimed(a)
        clock.advance(LEASE - 1)
        for ledger in (b, a):
            outcome = ledger.claim("p-1", "d-1", CASE)
            assert outcome == Held(record)

    def test_the_same_plan_id_with_another_digest_is_a_conflict_in_any_state(
        self, a: Ledger, b: Ledger
    ) -> None:
        record = claimed(a)
        assert b.claim("p-1", "other-digest", CASE) == Conflict(record)
        done = a.complete(record, RESULT)
        assert b.claim("p-1", "other-digest", CASE) == Conflict(done)

    def test_a_done_plan_is_completed_with_its_result_not_claimed_again(
        self, a: Ledger, b: Ledger, clock: ManualClock
    ) -> None:
        done = a.complete(claimed(a), RESULT, undo={"operations": []})
        clock.advance(10 * LEASE)
        outcome = b.claim("p-1", "d-1", CASE)
        assert outcome == Completed(done)
        assert outcome.record.result == RESULT and outcome.record.undo == {"operations": []}

    def test_a_stale_known_record_is_read_again_and_the_race_has_one_winner(
        self, a: Ledger, b: Ledger, clock: ManualClock
    ) -> None:
        # Both see the lease run out; a writes first, b's write names the old generation.
        claimed(a)
        clock.advance(LEASE + 1)
        seen_by_b = b.read("p-1")
        taken = claimed(a)
        assert taken.attempts == 2
        assert b.claim("p-1", "d-1", CASE, known=seen_by_b) == Held(taken)

    def test_a_claim_creating_a_record_that_appeared_meanwhile_looks_again(
        self, a: Ledger, b: Ledger
    ) -> None:
        # b believed the plan new (known=None) while a created it: b's create fails, b reads
        # a's record and is told it is held.
        record = claimed(a)
        assert b.claim("p-1", "d-1", CASE, known=None) == Held(record)

    def test_a_fault_of_the_store_reaches_the_caller(
        self, store: MemoryLedgerStore, clock: ManualClock
    ) -> None:
        down = FaultyStore(store, breaks=lambda operation, name: True)
        with pytest.raises(ServiceUnavailable):
            daemon(down, clock, "a").claim("p-1", "d-1", CASE)
        assert store.names() == []


class TestTakeover:
    def test_an_expired_lease_is_taken_over_and_counted(
        self, a: Ledger, b: Ledger, clock: ManualClock
    ) -> None:
        first = claimed(a)
        clock.advance(LEASE + 0.001)
        outcome = b.claim("p-1", "d-1", CASE)
        assert isinstance(outcome, Claimed)
        assert outcome.takeover and outcome.previous_owner == "worker-a"
        record = outcome.record
        assert (record.owner, record.attempts, record.takeovers) == ("worker-b", 2, 1)
        assert record.lease_expires_at == clock.now + LEASE
        assert record.token != first.token and record.generation > first.generation

    def test_the_previous_owner_then_loses_every_write_and_its_release_changes_nothing(
        self, a: Ledger, b: Ledger, clock: ManualClock
    ) -> None:
        stale = claimed(a)
        clock.advance(LEASE + 1)
        taken = claimed(b)
        with pytest.raises(LeaseLostError):
            a.renew(stale, {"steps_done": 1})
        with pytest.raises(LeaseLostError):
            a.complete(stale, RESULT)
        a.release(stale)  # quietly nothing
        assert b.read("p-1") == taken

    def test_a_lease_released_by_its_owner_is_picked_up_at_once_without_a_takeover(
        self, a: Ledger
    ) -> None:
        record = claimed(a)
        a.release(record)
        outcome = a.claim("p-1", "d-1", CASE)
        assert isinstance(outcome, Claimed)
        assert not outcome.takeover and outcome.previous_owner == "worker-a"
        assert (outcome.record.attempts, outcome.record.takeovers) == (2, 0)

    def test_its_own_lease_run_out_unreleased_counts_as_a_takeover(
        self, a: Ledger, clock: ManualClock
    ) -> None:
        # Only a release says the daemon let go of it on purpose; a lease that ran out means
        # the apply that held it stalled or died.
        claimed(a)
        clock.advance(LEASE + 1)
        outcome = a.claim("p-1", "d-1", CASE)
        assert isinstance(outcome, Claimed) and outcome.takeover
        assert (outcome.record.attempts, outcome.record.takeovers) == (2, 1)

    def test_a_released_lease_is_taken_over_by_another_daemon_at_once(
        self, a: Ledger, b: Ledger
    ) -> None:
        a.release(claimed(a))
        outcome = b.claim("p-1", "d-1", CASE)
        assert isinstance(outcome, Claimed) and outcome.takeover
        assert outcome.previous_owner == "worker-a"

    def test_the_epoch_is_the_claim_count_across_owners(
        self, a: Ledger, b: Ledger, clock: ManualClock
    ) -> None:
        epochs = [claimed(a).attempts]
        for ledger in (b, a, b):
            clock.advance(LEASE + 1)
            epochs.append(claimed(ledger).attempts)
        assert epochs == [1, 2, 3, 4]
        assert b.read("p-1").takeovers == 3  # type: ignore[union-attr]

    def test_progress_survives_a_takeover(self, a: Ledger, b: Ledger, clock: ManualClock) -> None:
        a.renew(claimed(a), {"done": [[0, 4]], "epoch": 1})
        clock.advance(LEASE + 1)
        assert claimed(b).progress == {"done": [[0, 4]], "epoch": 1}


class TestRenew:
    def test_renewing_extends_the_lease_and_records_progress(
        self, a: Ledger, clock: ManualClock
    ) -> None:
        record = claimed(a)
        clock.advance(LEASE / 2)
        renewed = a.renew(record, {"steps_done": 3})
        assert renewed.lease_expires_at == clock.now + LEASE
        assert renewed.progress == {"steps_done": 3}
        assert renewed.generation > record.generation and renewed.token != record.token
        assert a.read("p-1") == renewed
        again = a.renew(renewed)
        assert again.progress == {"steps_done": 3}

    def test_renewing_from_a_stale_generation_is_a_lost_lease(self, a: Ledger) -> None:
        record = claimed(a)
        a.renew(record)
        with pytest.raises(LeaseLostError):
            a.renew(record)

    def test_a_write_that_landed_but_whose_reply_was_lost_is_recognised_as_ours(
        self, a: Ledger, store: MemoryLedgerStore, clock: ManualClock
    ) -> None:
        """GCS retried an upload whose first try landed: the retry meets 412. The object holds
        our token, so the renewal stands instead of being taken for a lost lease."""
        record = claimed(a)

        class ReplyLost(FaultyStore):
            def write(
                self, name: str, data: bytes, *, content_type: str, if_generation_match: int | None
            ) -> int:
                self.inner.write(
                    name, data, content_type=content_type, if_generation_match=if_generation_match
                )
                raise GenerationMismatchError("the retry of a landed upload")

        ledger = daemon(ReplyLost(store), clock, "a")
        renewed = ledger.renew(record, {"steps_done": 1})
        assert renewed == a.read("p-1")
        assert renewed.progress == {"steps_done": 1} and renewed.generation > record.generation


class TestReleaseAndComplete:
    def test_release_ends_the_lease_and_keeps_the_plan_claimed(self, a: Ledger) -> None:
        a.release(claimed(a))
        record = a.read("p-1")
        assert record is not None
        assert record.state is RecordState.CLAIMED and record.lease_expires_at == 0.0

    def test_complete_records_the_result_and_the_inverse_plan(self, a: Ledger) -> None:
        record = claimed(a)
        done = a.complete(record, RESULT, undo={"operations": [{"type": "delete"}]})
        assert done.state is RecordState.DONE and done.lease_expires_at == 0.0
        assert done.result == RESULT and done.undo == {"operations": [{"type": "delete"}]}
        assert a.read("p-1") == done

    def test_complete_from_a_stale_generation_is_a_lost_lease(self, a: Ledger) -> None:
        record = claimed(a)
        a.renew(record)
        with pytest.raises(LeaseLostError):
            a.complete(record, RESULT)
        assert a.read("p-1").state is RecordState.CLAIMED  # type: ignore[union-attr]


class TestStoredRecord:
    def test_states_are_stored_as_the_same_strings_as_before(
        self, a: Ledger, store: MemoryLedgerStore
    ) -> None:
        record = claimed(a)
        assert stored_document(store, "plans/p-1.json")["state"] == "claimed"
        a.complete(record, RESULT)
        assert stored_document(store, "plans/p-1.json")["state"] == "done"
        assert json.dumps(RecordState.DONE) == '"done"'
        assert [state.value for state in RecordState] == ["claimed", "done", "awaiting_approval"]

    def test_the_stored_document_has_the_record_fields_but_not_the_generation(
        self, a: Ledger, store: MemoryLedgerStore
    ) -> None:
        claimed(a)
        assert set(stored_document(store, "plans/p-1.json")) == {
            "plan_id",
            "digest",
            "case_name",
            "state",
            "owner",
            "token",
            "lease_expires_at",
            "attempts",
            "takeovers",
            "progress",
            "result",
            "undo",
            "approval",
            "updated_at",
        }

    def test_a_record_reads_back_with_its_state_as_the_enum(self, a: Ledger) -> None:
        record = claimed(a)
        again = Record.from_json(record.to_json(), record.generation)
        assert again == record and type(again.state) is RecordState

    @pytest.mark.parametrize(
        "data",
        [
            b"not json",
            b"[1, 2]",
            b'"claimed"',
            b"{}",
            b'{"plan_id": "p-1"}',
            b'{"plan_id": "p-1", "state": "done"}',
            b"\xff\xfe",
        ],
        ids=[
            "not-json",
            "a-list",
            "a-string",
            "empty-object",
            "no-state",
            "missing-fields",
            "not-utf8",
        ],
    )
    def test_an_object_that_is_not_a_record_is_corrupt(
        self, a: Ledger, store: MemoryLedgerStore, data: bytes
    ) -> None:
        store.write("plans/p-1.json", data, content_type="x", if_generation_match=0)
        with pytest.raises(LedgerCorruptError):
            a.read("p-1")
        with pytest.raises(LedgerCorruptError):
            a.claim("p-1", "d-1", CASE)

    @pytest.mark.parametrize("change", [{"state": "finished"}, {"surprise": 1}])
    def test_a_record_with_an_unknown_state_or_field_is_corrupt(
        self, a: Ledger, store: MemoryLedgerStore, change: dict[str, object]
    ) -> None:
        record = claimed(a)
        document = dict(json.loads(record.to_json()), **change)
        store.write(
            "plans/p-1.json",
            json.dumps(document).encode(),
            content_type="x",
            if_generation_match=record.generation,
        )
        with pytest.raises(LedgerCorruptError):
            a.read("p-1")

    def test_an_object_that_keeps_changing_under_the_reader_is_a_lost_lease(
        self, store: MemoryLedgerStore, clock: ManualClock
    ) -> None:
        class Churning(FaultyStore):
            def read(self, name: str) -> Stored | None:
                raise UnstableObjectError(f"ledger object {name} keeps changing")

        with pytest.raises(LeaseLostError):
            daemon(Churning(store), clock, "a").read("p-1")


class TestCaseLease:
    def test_a_free_case_is_leased_and_leased_again_to_the_same_plan(
        self, a: Ledger, b: Ledger, store: MemoryLedgerStore
    ) -> None:
        assert a.acquire_case(CASE, "p-1") == CaseLease(CASE, "p-1")
        assert b.acquire_case(CASE, "p-1") == CaseLease(CASE, "p-1")
        [name] = store.names("cases/")
        assert name == Ledger.case_lease_name(CASE)
        assert stored_document(store, name)["plan_id"] == "p-1"
        assert stored_document(store, name)["owner"] == "worker-b"

    def test_other_cases_do_not_share_a_lease(self, a: Ledger) -> None:
        assert a.acquire_case(CASE, "p-1") == CaseLease(CASE, "p-1")
        assert a.acquire_case("Case-B", "p-2") == CaseLease("Case-B", "p-2")
        assert Ledger.case_lease_name(CASE) != Ledger.case_lease_name("Case-B")
        assert Ledger.case_lease_name("Café") != Ledger.case_lease_name("Cafe\u0301")

    def test_a_plan_applying_elsewhere_holds_its_case(self, a: Ledger, b: Ledger) -> None:
        a.acquire_case(CASE, "p-1")
        claimed(a)
        assert b.acquire_case(CASE, "p-2") == CaseHeld(CASE, "p-1", "worker-a", "applying")

    def test_an_unfinished_plan_keeps_its_case_until_it_is_abandoned(
        self, a: Ledger, b: Ledger, clock: ManualClock
    ) -> None:
        a.acquire_case(CASE, "p-1")
        a.release(claimed(a))  # nacked: it will be redelivered
        clock.advance(ABANDON)
        assert b.acquire_case(CASE, "p-2") == CaseHeld(CASE, "p-1", "worker-a", "unfinished")
        clock.advance(1)
        assert b.acquire_case(CASE, "p-2") == CaseLease(CASE, "p-2", taken_from="p-1")

    def test_an_expired_lease_counts_as_unfinished_from_its_last_write(
        self, a: Ledger, b: Ledger, clock: ManualClock
    ) -> None:
        a.acquire_case(CASE, "p-1")
        record = claimed(a)
        clock.advance(ABANDON - 5)
        a.renew(record)  # the record was seen 5 s before the case lease's age runs out
        clock.advance(LEASE + 10)
        assert b.acquire_case(CASE, "p-2").why == "unfinished"  # type: ignore[union-attr]

    def test_a_done_plan_hands_its_case_on(self, a: Ledger, b: Ledger) -> None:
        a.acquire_case(CASE, "p-1")
        a.complete(claimed(a), RESULT)
        assert b.acquire_case(CASE, "p-2") == CaseLease(CASE, "p-2")

    def test_a_plan_that_took_the_case_but_never_claimed_keeps_it_for_a_while(
        self, a: Ledger, b: Ledger, clock: ManualClock
    ) -> None:
        a.acquire_case(CASE, "p-1")
        assert b.acquire_case(CASE, "p-2") == CaseHeld(CASE, "p-1", "worker-a", "unfinished")
        clock.advance(ABANDON + 1)
        assert b.acquire_case(CASE, "p-2") == CaseLease(CASE, "p-2", taken_from="p-1")

    @pytest.mark.parametrize("junk", [b"not json", b"[]", b'"p-1"'])
    def test_a_case_object_that_is_not_ours_is_overwritten(
        self, a: Ledger, store: MemoryLedgerStore, junk: bytes
    ) -> None:
        store.write(Ledger.case_lease_name(CASE), junk, content_type="x", if_generation_match=0)
        assert a.acquire_case(CASE, "p-1") == CaseLease(CASE, "p-1")

    def test_of_two_plans_racing_for_a_free_case_one_wins(
        self, store: MemoryLedgerStore, clock: ManualClock, b: Ledger
    ) -> None:
        """b takes the case between a's read (free) and a's generation-matched write: a's
        write fails, a looks again and waits for b's plan."""
        raced: list[object] = []

        def let_b_in(name: str, generation: int | None) -> None:
            if name.startswith("cases/") and not raced:
                raced.append(b.acquire_case(CASE, "p-2"))

        a = daemon(FaultyStore(store, before_write=let_b_in), clock, "a")
        assert a.acquire_case(CASE, "p-1") == CaseHeld(CASE, "p-2", "worker-b", "unfinished")
        assert raced == [CaseLease(CASE, "p-2")]

    def test_a_case_lease_taken_over_records_the_new_holder(
        self, a: Ledger, b: Ledger, store: MemoryLedgerStore, clock: ManualClock
    ) -> None:
        a.acquire_case(CASE, "p-1")
        a.complete(claimed(a), RESULT)
        b.acquire_case(CASE, "p-2")
        document = stored_document(store, Ledger.case_lease_name(CASE))
        assert (document["plan_id"], document["owner"], document["at"]) == (
            "p-2",
            "worker-b",
            clock.now,
        )


class TestJournalHeader:
    def test_saved_and_loaded_for_a_takeover_elsewhere(self, a: Ledger, b: Ledger) -> None:
        assert b.load_journal("p-1") is None
        a.save_journal("p-1", b'{"header":1}\n')
        a.save_journal("p-1", b'{"header":2}\n')  # unconditional: the latest wins
        assert b.load_journal("p-1") == b'{"header":2}\n'


class TestAwaitingApproval:
    """A plan held for an operator (service/approval.py): recorded once, claimed only when
    approved, and then no takeover of anyone's lease."""

    def test_recorded_once_and_held_until_approved(
        self, a: Ledger, store: MemoryLedgerStore
    ) -> None:
        waiting = a.await_approval("p-1", "d", "Case", RESULT, {"changes_digest": "x"})
        assert waiting is not None and waiting.state is RecordState.AWAITING_APPROVAL
        assert stored_document(store, "plans/p-1.json")["state"] == "awaiting_approval"
        assert a.await_approval("p-1", "d", "Case", RESULT, {}) is None
        assert isinstance(a.claim("p-1", "d", "Case"), Held)
        assert a.read("p-1") == waiting
        outcome = a.claim("p-1", "d", "Case", approved=True)
        assert isinstance(outcome, Claimed) and not outcome.takeover
        assert outcome.record.state is RecordState.CLAIMED
        assert outcome.record.approval == {"changes_digest": "x"}
        assert outcome.record.attempts == 1 and outcome.record.takeovers == 0

    def test_a_waiting_plan_of_another_digest_is_a_conflict(self, a: Ledger) -> None:
        a.await_approval("p-1", "d", "Case", RESULT, {})
        assert isinstance(a.claim("p-1", "other", "Case", approved=True), Conflict)
