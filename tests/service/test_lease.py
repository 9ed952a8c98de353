"""LeaseKeeper on the in-memory ledger: it renews, notices a takeover and stops the apply at the
next step, and gives the lease back when the apply stops for any other reason."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from fileops_daemon.service.lease import LeaseKeeper, release_quietly
from fileops_daemon.service.ledger import Claimed, LeaseLostError, Ledger, Record
from fileops_daemon.service.memstore import MemoryLedgerStore
from tests.service.stand_ins import FaultyStore, ManualClock

LEASE = 30.0
#: A renewal interval the tests never reach: only the executor's hooks renew.
NEVER = 3600.0


@pytest.fixture
def store() -> MemoryLedgerStore:
    return MemoryLedgerStore()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def ledger_of(store: object, clock: ManualClock, name: str = "a") -> Ledger:
    return Ledger(store, f"worker-{name}", LEASE, clock=clock)  # type: ignore[arg-type]


def claim(ledger: Ledger) -> Record:
    outcome = ledger.claim("p-1", "d-1", "Case-A")
    assert isinstance(outcome, Claimed)
    return outcome.record


def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def take_over(store: MemoryLedgerStore, clock: ManualClock) -> Record:
    """Another daemon claims the plan once its lease ran out."""
    clock.advance(LEASE + 1)
    return claim(ledger_of(store, clock, "b"))


class TestRenewing:
    def test_the_thread_renews_the_lease_every_interval(
        self, store: MemoryLedgerStore, clock: ManualClock
    ) -> None:
        ledger = ledger_of(store, clock)
        record = claim(ledger)
        with LeaseKeeper(ledger, record, interval=0.01) as keeper:
            clock.advance(LEASE - 1)
            eventually(lambda: keeper.record.lease_expires_at == clock.now + LEASE)
        assert ledger.read("p-1") == keeper.record
        assert not keeper.lost.is_set()

    def test_a_journal_sync_renews_with_its_summary_the_steps_and_the_epoch(
        self, store: MemoryLedgerStore, clock: ManualClock
    ) -> None:
        ledger = ledger_of(store, clock)
        record = claim(ledger)
        with LeaseKeeper(ledger, record, NEVER) as keeper:
            keeper.on_step(2, 5)
            keeper.journal_synced({"done": [[0, 1]], "state": "applying"})
        stored = ledger.read("p-1")
        assert stored is not None and stored.generation > record.generation
        assert stored.progress == {
            "steps_done": 2,
            "steps_total": 5,
            "done": [[0, 1]],
            "state": "applying",
            "epoch": 1,
        }

    @pytest.mark.parametrize("final", ["applied", "rolled_back"])
    def test_a_finished_applys_last_checkpoint_rides_on_the_completion(
        self, store: MemoryLedgerStore, clock: ManualClock, final: str
    ) -> None:
        ledger = ledger_of(store, clock)
        record = claim(ledger)
        with LeaseKeeper(ledger, record, NEVER) as keeper:
            keeper.journal_synced({"done": [[0, 0]], "state": "applying"})
            checkpoint = ledger.read("p-1")
            keeper.journal_synced({"done": [[0, 1]], "state": final})
            assert ledger.read("p-1") == checkpoint  # no write of its own
        done = keeper.complete({"status": "applied"})
        assert ledger.read("p-1") == done
        assert done.progress == {"done": [[0, 1]], "state": final, "epoch": 1}
        assert done.result == {"status": "applied"} and done.lease_expires_at == 0.0

    def test_a_deferred_last_checkpoint_goes_with_a_release(
        self, store: MemoryLedgerStore, clock: ManualClock
    ) -> None:
        ledger = ledger_of(store, clock)
        with LeaseKeeper(ledger, claim(ledger), NEVER) as keeper:
            keeper.journal_synced({"done": [[0, 1]], "state": "applied"})
        keeper.release()
        released = ledger.read("p-1")
        assert released is not None and released.lease_expires_at == 0.0
        assert released.progress["state"] == "applied"

    def test_a_takeover_is_still_noticed_at_the_last_sync(
        self, store: MemoryLedgerStore, clock: ManualClock
    ) -> None:
        ledger = ledger_of(store, clock)
        with LeaseKeeper(ledger, claim(ledger), NEVER) as keeper:
            take_over(store, clock)
            with pytest.raises(LeaseLostError):
                keeper.journal_synced({"done": [], "state": "applying"})
            with pytest.raises(LeaseLostError):
                keeper.journal_synced({"done": [[0, 0]], "state": "applied"})
            with pytest.raises(LeaseLostError):
                keeper.complete({"status": "applied"})

    def test_the_epoch_is_the_attempt_of_the_claim_that_wrote_the_checkpoint(
        self, store: MemoryLedgerStore, clock: ManualClock
    ) -> None:
        claim(ledger_of(store, clock, "a"))
        theirs = take_over(store, clock)
        ledger = ledger_of(store, clock, "b")
        with LeaseKeeper(ledger, theirs, NEVER) as keeper:
            keeper.journal_synced({"done": []})
        assert ledger.read("p-1").progress["epoch"] == 2  # type: ignore[union-attr]

    def test_the_journal_header_goes_to_the_ledger(
        self, store: MemoryLedgerStore, clock: ManualClock
    ) -> None:
        ledger = ledger_of(store, clock)
        with LeaseKeeper(ledger, claim(ledger), NEVER) as keeper:
            keeper.journal_created(b'{"steps":[]}\n')
        assert ledger.load_journal("p-1") == b'{"steps":[]}\n'

    def test_a_transient_fault_is_retried_at_the_next_beat(
        self, store: MemoryLedgerStore, clock: ManualClock
    ) -> None:
        failures = [2]  # the next two renewals fail

        def breaks(operation: str, name: str) -> bool:
            if operation == "write" and failures[0] > 0:
                failures[0] -= 1
                return True
            return False

        record = claim(ledger_of(store, clock))
        ledger = ledger_of(FaultyStore(store, breaks=breaks), clock)
        with LeaseKeeper(ledger, record, interval=0.01) as keeper:
            eventually(lambda: keeper.record.generation > record.generation)
        assert failures == [0] and not keeper.lost.is_set()


class TestLosingTheLease:
    def test_a_takeover_met_at_a_sync_sets_lost_and_raises_then_every_step_raises(
        self, store: MemoryLedgerStore, clock: ManualClock
    ) -> None:
        attempted: list[str] = []
        ledger = ledger_of(
            FaultyStore(store, before_write=lambda name, generation: attempted.append(name)),
            clock,
        )
        keeper = LeaseKeeper(ledger, claim(ledger), NEVER)
        theirs = take_over(store, clock)
        attempted.clear()
        with pytest.raises(LeaseLostError), keeper:
            keeper.on_step(1, 3)  # nothing written yet: it cannot know
            with pytest.raises(LeaseLostError):
                keeper.journal_synced({"done": [[0, 0]]})
            assert keeper.lost.is_set()
            with pytest.raises(LeaseLostError):
                keeper.journal_synced({"done": [[0, 1]]})
            keeper.on_step(2, 3)
        assert ledger.read("p-1") == theirs
        # One write found the lease lost; nothing was tried after, not even a release.
        assert attempted == ["plans/p-1.json"]

    def test_a_takeover_met_by_the_thread_stops_the_next_step(
        self, store: MemoryLedgerStore, clock: ManualClock
    ) -> None:
        ledger = ledger_of(store, clock)
        record = claim(ledger)
        theirs = take_over(store, clock)
        with pytest.raises(LeaseLostError), LeaseKeeper(ledger, record, interval=0.01) as keeper:
            eventually(keeper.lost.is_set)
            keeper.on_step(1, 3)
        assert ledger.read("p-1") == theirs

    def test_any_other_exception_gives_the_lease_back(
        self, store: MemoryLedgerStore, clock: ManualClock
    ) -> None:
        ledger = ledger_of(store, clock)
        with pytest.raises(OSError), LeaseKeeper(ledger, claim(ledger), NEVER) as keeper:
            keeper.journal_synced({"done": [[0, 0]]})
            raise OSError("EIO")
        released = ledger.read("p-1")
        assert released is not None and released.lease_expires_at == 0.0
        assert released.progress["done"] == [[0, 0]]  # released from the last write

    def test_a_clean_exit_keeps_the_lease_for_the_completion(
        self, store: MemoryLedgerStore, clock: ManualClock
    ) -> None:
        ledger = ledger_of(store, clock)
        with LeaseKeeper(ledger, claim(ledger), NEVER) as keeper:
            pass
        assert ledger.read("p-1") == keeper.record
        assert keeper.record.lease_expires_at == clock.now + LEASE

    def test_the_thread_stops_when_the_keeper_exits(
        self, store: MemoryLedgerStore, clock: ManualClock
    ) -> None:
        ledger = ledger_of(store, clock)
        with LeaseKeeper(ledger, claim(ledger), interval=0.01):
            assert any(thread.name == "lease-keeper" for thread in threading.enumerate())
        assert not any(thread.name == "lease-keeper" for thread in threading.enumerate())


class TestReleaseQuietly:
    def test_a_fault_while_releasing_is_logged_not_raised(
        self, store: MemoryLedgerStore, clock: ManualClock
    ) -> None:
        record = claim(ledger_of(store, clock))
        down = ledger_of(FaultyStore(store, breaks=lambda operation, name: True), clock)
        release_quietly(down, record)
        assert ledger_of(store, clock).read("p-1") == record  # the lease runs out on its own
