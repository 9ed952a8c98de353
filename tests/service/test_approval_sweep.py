"""Plans decided while no daemon ran, found by the next daemon (approval_sweep.py): which
ones the desk picks, in process (in-memory ledger store, a real projects root)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fileops_daemon.contract.approval import REJECT
from fileops_daemon.service.approval import DecisionStore
from fileops_daemon.service.memstore import MemoryLedgerStore
from tests.service.test_approval_handler import ACK, daemon, decide, waiting, wake
from tests.service.test_handler_table import Rig
from tests.support import CASE, SEED_OPS, plan_doc


class ListedDecisions(DecisionStore):
    """The index listed from the in-memory store (the daemon lists it from the bucket)."""

    def __init__(self, store: MemoryLedgerStore) -> None:
        super().__init__(store)
        self.memory = store

    @property
    def listable(self) -> bool:
        return True

    def indexed(self) -> Iterator[str]:
        for name in self.memory.names("awaiting/"):
            yield name.removeprefix("awaiting/").removesuffix(".json")


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    root = tmp_path / "projects"
    (root / CASE / "uncategorized").mkdir(parents=True)
    (root / CASE / "Medical Records").mkdir()
    (root / CASE / "Investigation").mkdir()
    (root / CASE / "uncategorized" / "file1.pdf").write_text("one\n")
    return Rig(tmp_path, root)


def test_only_plans_still_waiting_with_a_decision_from_before_the_start_are_picked(
    rig: Rig,
) -> None:
    a = daemon(rig)
    shown = {"p-1": waiting(rig, a)}
    for plan_id in ("p-2", "p-3", "p-4"):
        assert a.handle(plan_doc(SEED_OPS, plan_id=plan_id), message_id=plan_id) == ACK
        [shown[plan_id]] = a.answers(plan_id)
    decide(rig, shown["p-1"])  # decided, then the daemon stopped
    decide(rig, shown["p-4"], REJECT)
    rig.clock.advance(5)
    started = rig.clock()  # the next daemon starts
    rig.clock.advance(1)
    decide(rig, shown["p-2"])  # decided while it runs: its wake-up comes
    # p-3: nobody decided. p-1, decided and already settled by its wake-up, waits no more.
    desk = a.handler.approvals
    desk.decisions = ListedDecisions(rig.store)
    assert sorted(desk.decided_before(started)) == [("p-1", CASE), ("p-4", CASE)]
    assert wake(a, "w-1") == ACK
    assert desk.decided_before(started) == [("p-4", CASE)]


def test_without_a_listable_index_nothing_is_picked(rig: Rig) -> None:
    a = daemon(rig)
    decide(rig, waiting(rig, a))
    rig.clock.advance(1)
    assert a.handler.approvals.decided_before(rig.clock()) == []
