"""What apply_plan and dry_run return besides the result document: how the run ended, the
inverse plan and the steps in effect, so callers never read them back from disk or text."""

from __future__ import annotations

import errno
import threading
from pathlib import Path
from typing import Any

import pytest

from fileops_daemon.contract.plan import parse_plan
from fileops_daemon.contract.results import ResultStatus
from fileops_daemon.core.execute import ApplyOutcome, ApplyPaused, RunEnd, apply_plan, dry_run
from fileops_daemon.core.fsops import CaseFS
from fileops_daemon.core.store import PlanStore, case_lock
from tests.conftest import World
from tests.support import CASE, NO_WAIT, assert_valid_result, notes_ops, plan_doc

MOVES = [
    {"type": "mkdir", "path": f"{CASE}/sorted"},
    {"type": "move", "from": f"{CASE}/uncategorized/file1.pdf", "to": f"{CASE}/sorted/a.pdf"},
    {"type": "move", "from": f"{CASE}/uncategorized/file2.pdf", "to": f"{CASE}/sorted/b.pdf"},
]


def _apply(world: World, ops: list[dict[str, Any]], **kwargs: Any) -> ApplyOutcome:
    kwargs.setdefault("retry", NO_WAIT)
    plan = parse_plan(plan_doc(ops))
    outcome = apply_plan(plan, str(world.root), str(world.state), **kwargs)
    assert_valid_result(outcome.result)
    assert outcome.result["status"] == outcome.status, "the end and the document agree"
    return outcome


def _intruder_at_step(world: World, done_at: int) -> Any:
    """An on_step hook that puts someone else's file where the last step moves to, once
    ``done_at`` steps are done (1: the folder is made, and no move has started yet)."""
    intruder = world.case / "sorted" / "b.pdf"

    def race(done: int, total: int) -> None:
        if done == done_at and not intruder.exists():
            intruder.write_text("someone else's file")

    return race


class TestEnds:
    def test_an_applied_plan_carries_its_inverse_and_its_steps(self, world: World) -> None:
        outcome = _apply(world, MOVES)
        assert (outcome.end, outcome.status) == (RunEnd.APPLIED, ResultStatus.APPLIED)
        assert outcome.undo is not None
        assert outcome.undo == PlanStore(str(world.state), "p-1").read_undo()
        assert outcome.undo["undo_of"] == "p-1"
        assert outcome.steps_done == outcome.result["steps"] == 3
        again = _apply(world, MOVES)
        assert (again.end, again.result, again.undo) == (
            RunEnd.APPLIED,
            outcome.result,
            outcome.undo,
        )

    def test_a_dry_run_is_planned_or_rejected(self, world: World) -> None:
        planned = dry_run(parse_plan(plan_doc(MOVES)), str(world.root))
        assert (planned.end, planned.undo) == (RunEnd.PLANNED, None)
        conflict = [{"type": "move", "from": f"{CASE}/nowhere.pdf", "to": f"{CASE}/b.pdf"}]
        assert dry_run(parse_plan(plan_doc(conflict)), str(world.root)).end is RunEnd.REJECTED

    def test_a_held_lock_is_busy_and_other_refusals_are_rejected(self, world: World) -> None:
        with case_lock(str(world.state), CASE):
            busy = _apply(world, MOVES)
        assert (busy.end, busy.status) == (RunEnd.BUSY, ResultStatus.REJECTED)
        assert _apply(world, MOVES).end is RunEnd.APPLIED
        other = _apply(world, [{"type": "mkdir", "path": f"{CASE}/Other"}])
        assert other.end is RunEnd.REJECTED

    @pytest.mark.parametrize("parallelism", [1, 4])
    def test_a_failed_step_ends_rolled_back_with_what_stays(
        self, world: World, parallelism: int
    ) -> None:
        race = _intruder_at_step(world, 1)
        outcome = _apply(world, MOVES, on_step=race, parallelism=parallelism)
        assert (outcome.end, outcome.status) == (RunEnd.ROLLED_BACK, ResultStatus.FAILED)
        # The move was undone; the folder stays, as it holds the intruder's file.
        assert [line.split(" (")[0] for line in outcome.remaining] == ["mkdir sorted"]
        assert list(outcome.remaining) == outcome.result["remaining"]
        assert (outcome.steps_done, outcome.undo) == (1, None)
        again = _apply(world, MOVES)
        assert (again.end, again.result, again.remaining) == (
            RunEnd.ROLLED_BACK,
            outcome.result,
            outcome.remaining,
        )

    def test_a_rollback_that_meets_a_passing_fault_is_incomplete_until_a_rerun(
        self, world: World, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real_rmdir = CaseFS.rmdir

        def failing_rmdir(self: CaseFS, parts: tuple[str, ...]) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(CaseFS, "rmdir", failing_rmdir)
        stuck = _apply(world, MOVES, on_step=_intruder_at_step(world, 1))
        assert (stuck.end, stuck.status) == (RunEnd.ROLLBACK_INCOMPLETE, ResultStatus.FAILED)
        assert [line.split(" (")[0] for line in stuck.remaining] == ["mkdir sorted"]
        assert PlanStore(str(world.state), "p-1").read_result() is None
        monkeypatch.setattr(CaseFS, "rmdir", real_rmdir)
        final = _apply(world, MOVES)
        assert final.end is RunEnd.ROLLED_BACK  # the folder is not empty: kept, for good
        assert PlanStore(str(world.state), "p-1").read_result() == final.result

    def test_a_case_folder_gone_since_the_journal_is_tried_again_later(
        self, world: World, tmp_path: Path
    ) -> None:
        pause = threading.Event()

        def stop_at_three(done: int, total: int) -> None:
            if done == 3:
                pause.set()

        ops = notes_ops(10)
        with pytest.raises(ApplyPaused):
            _apply(world, ops, on_step=stop_at_three, pause=pause)
        aside = tmp_path / "aside"
        world.case.rename(aside)
        gone = _apply(world, ops)
        assert (gone.end, gone.status) == (RunEnd.ROLLBACK_INCOMPLETE, ResultStatus.FAILED)
        assert [error["code"] for error in gone.result["errors"]] == ["tree_changed"]
        aside.rename(world.case)
        assert _apply(world, ops).end is RunEnd.APPLIED
