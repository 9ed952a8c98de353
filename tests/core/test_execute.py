"""Apply: journaled steps, rollback on a failed step, idempotency, undo."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.contract.identity import legacy_plan_digest
from fileops_daemon.contract.plan import parse_plan, undo_plan_id
from fileops_daemon.core.execute import ApplyPaused, apply_plan
from fileops_daemon.core.journal import Journal
from fileops_daemon.core.paths import WORK_DIR_NAME
from fileops_daemon.core.store import PlanStore
from fileops_daemon.core.undo import build_undo_plan
from tests.conftest import World
from tests.support import (
    CASE,
    NO_WAIT,
    apply_doc,
    assert_valid_result,
    error_codes,
    notes_ops,
    plan_doc,
    snapshot,
    twin_tree,
)

REORG = [
    {"type": "mkdir", "path": f"{CASE}/Investigation/photos"},
    {
        "type": "move",
        "from": f"{CASE}/uncategorized/file1.pdf",
        "to": f"{CASE}/Medical Records/file1.pdf",
    },
    {
        "type": "copy",
        "from": f"{CASE}/uncategorized/file2.pdf",
        "to": f"{CASE}/Investigation/file2-copy.pdf",
    },
    {"type": "write", "path": f"{CASE}/Investigation/notes.txt", "content": "call the witness"},
    {"type": "delete", "path": f"{CASE}/uncategorized/file3.pdf"},
    {"type": "move", "from": f"{CASE}/uncategorized", "to": f"{CASE}/Investigation/old"},
]


class TestApply:
    def test_applies_every_operation_type(self, world: World) -> None:
        original = (world.case / "uncategorized" / "file3.pdf").read_bytes()
        result = apply_doc(plan_doc(REORG), world.root, world.state)
        assert result["status"] == "applied"
        case = world.case
        assert (case / "Investigation" / "photos").is_dir()
        assert (case / "Medical Records" / "file1.pdf").read_bytes() == b"file 1\n"
        assert (case / "Investigation" / "file2-copy.pdf").read_bytes() == b"file 2\n" * 2
        assert (case / "Investigation" / "notes.txt").read_text() == "call the witness"
        assert (case / "Investigation" / "old" / "file2.pdf").exists()
        assert not (case / "uncategorized").exists()
        trash = case / WORK_DIR_NAME / "p-1" / "trash" / "4" / "uncategorized" / "file3.pdf"
        assert trash.read_bytes() == original
        assert not (case / WORK_DIR_NAME / "p-1" / "staging").exists()
        assert all(op["outcome"] == "applied" for op in result["operations"])
        assert result["undo_plan_id"] == "p-1.undo"

    def test_dry_run_result_lists_the_same_changes_as_the_apply(self, world: World) -> None:
        planned = apply_doc(plan_doc(REORG, dry_run=True), world.root, world.state)
        applied = apply_doc(plan_doc(REORG), world.root, world.state)
        assert planned["changes"] == applied["changes"]

    def test_overwrite_sends_the_old_file_to_the_trash(self, world: World) -> None:
        old = (world.case / "Investigation" / "report.txt").read_bytes()
        ops = [
            {
                "type": "write",
                "path": f"{CASE}/Investigation/report.txt",
                "content": "v2",
                "overwrite": True,
            }
        ]
        result = apply_doc(plan_doc(ops), world.root, world.state)
        assert result["status"] == "applied"
        assert (world.case / "Investigation" / "report.txt").read_text() == "v2"
        trashed = world.case / WORK_DIR_NAME / "p-1" / "trash" / "0" / "Investigation"
        assert (trashed / "report.txt").read_bytes() == old

    def test_nothing_outside_the_case_changes(self, world: World) -> None:
        outside = snapshot(world.outside), snapshot(world.root / f"{CASE}-evil")
        apply_doc(plan_doc(REORG), world.root, world.state)
        assert (snapshot(world.outside), snapshot(world.root / f"{CASE}-evil")) == outside


class TestRollback:
    def test_destination_appearing_mid_apply_rolls_everything_back(self, world: World) -> None:
        before = snapshot(world.root)
        intruder = world.case / "Investigation" / "old"

        def race(done: int, total: int) -> None:
            if done == 3:  # another writer creates the folder a later step will make
                intruder.mkdir()

        result = apply_doc(plan_doc(REORG), world.root, world.state, on_step=race)
        assert result["status"] == "failed"
        assert error_codes(result) == ["tree_changed"]
        assert "appeared" in result["errors"][0]["message"]
        intruder.rmdir()
        assert snapshot(world.root) == before
        assert {op["outcome"] for op in result["operations"]} <= {"rolled_back", "not_applied"}

    def test_a_file_added_to_a_folder_being_moved_is_never_lost(self, world: World) -> None:
        late = world.case / "uncategorized" / "late.pdf"
        ops = [{"type": "move", "from": f"{CASE}/uncategorized", "to": f"{CASE}/sorted"}]

        def race(done: int, total: int) -> None:
            if done == 2:
                late.write_text("arrived during the move")

        result = apply_doc(plan_doc(ops), world.root, world.state, on_step=race)
        assert result["status"] == "failed"
        assert late.read_text() == "arrived during the move"
        assert sorted(p.name for p in (world.case / "uncategorized").iterdir()) == [
            "file1.pdf",
            "file2.pdf",
            "file3.pdf",
            "late.pdf",
        ]
        assert not (world.case / "sorted").exists()

    def test_a_failed_plan_keeps_its_failed_result(self, world: World) -> None:
        def race(done: int, total: int) -> None:
            if done == 1:
                (world.case / "Medical Records" / "file1.pdf").write_text("someone else")

        first = apply_doc(plan_doc(REORG), world.root, world.state, on_step=race)
        again = apply_doc(plan_doc(REORG), world.root, world.state)
        assert first["status"] == again["status"] == "failed"
        assert again["started_at"] == first["started_at"]


class TestIdempotency:
    def test_rerunning_an_applied_plan_changes_nothing_and_returns_the_result(
        self, world: World
    ) -> None:
        first = apply_doc(plan_doc(REORG), world.root, world.state)
        after = snapshot(world.root)
        second = apply_doc(plan_doc(REORG), world.root, world.state)
        assert second == first
        assert snapshot(world.root) == after

    def test_same_plan_id_with_other_operations_is_refused(self, world: World) -> None:
        apply_doc(plan_doc(REORG), world.root, world.state)
        after = snapshot(world.root)
        other = plan_doc([{"type": "mkdir", "path": f"{CASE}/Other"}])
        result = apply_doc(other, world.root, world.state)
        assert result["status"] == "rejected"
        assert error_codes(result) == ["idempotency_conflict"]
        assert snapshot(world.root) == after

    def test_a_conflict_says_which_operation_differs(self, world: World) -> None:
        apply_doc(plan_doc(REORG), world.root, world.state)
        moved = {**REORG[1], "to": f"{CASE}/Investigation/file1.pdf"}
        result = apply_doc(plan_doc([REORG[0], moved, *REORG[2:]]), world.root, world.state)
        assert error_codes(result) == ["idempotency_conflict"]
        assert (
            f"operation 1 differs: move {CASE}/uncategorized/file1.pdf -> "
            f"{CASE}/Medical Records/file1.pdf vs move {CASE}/uncategorized/file1.pdf -> "
            f"{CASE}/Investigation/file1.pdf"
        ) in result["errors"][0]["message"]

    def test_a_reworded_reason_is_the_same_plan(self, world: World) -> None:
        first = apply_doc(plan_doc(REORG, reason="sort"), world.root, world.state)
        again = apply_doc(
            plan_doc(REORG, reason="sort the files", requested_by="agent"), world.root, world.state
        )
        assert first["status"] == "applied"
        assert again == first

    def test_a_result_recorded_under_the_old_digest_is_still_this_plan(self, world: World) -> None:
        document = plan_doc(REORG, reason="sort")
        first = apply_doc(document, world.root, world.state)
        store = PlanStore(str(world.state), "p-1")
        store.write_result({**first, "plan_digest": legacy_plan_digest(document)})
        again = apply_doc(document, world.root, world.state)
        assert again["status"] == "applied"
        assert again["started_at"] == first["started_at"]

    def test_a_journal_started_under_the_old_digest_resumes(self, world: World) -> None:
        document = plan_doc(REORG, reason="sort")
        assert legacy_plan_digest(document) != parse_plan(document).digest

        def stop(done: int, total: int) -> None:
            if done == 2:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            apply_doc(document, world.root, world.state, on_step=stop)
        store = PlanStore(str(world.state), "p-1")
        lines = Path(store.journal_path).read_text().splitlines(keepends=True)
        header = json.loads(lines[0])
        assert header["digest"] == parse_plan(document).digest
        header["digest"] = legacy_plan_digest(document)
        Path(store.journal_path).write_text(json.dumps(header) + "\n" + "".join(lines[1:]))
        result = apply_doc(document, world.root, world.state)
        assert result["status"] == "applied", result["errors"]

    def test_a_dry_run_does_not_claim_the_plan_id(self, world: World) -> None:
        apply_doc(plan_doc(REORG[:1], dry_run=True), world.root, world.state)
        result = apply_doc(plan_doc(REORG), world.root, world.state)
        assert result["status"] == "applied"

    def test_a_plan_being_applied_elsewhere_is_busy(self, world: World) -> None:
        store = PlanStore(str(world.state), "p-1")
        with store.locked():
            result = apply_doc(plan_doc(REORG), world.root, world.state)
        assert error_codes(result) == ["plan_busy"]
        assert (world.case / "uncategorized").exists()


def _undo(world: World, plan_id: str = "p-1", *, dry_run: bool = False) -> dict[str, object]:
    """Apply ``plan_id``'s undo as fileops does: from the inverse it stored."""
    stored = PlanStore(str(world.state), plan_id).read_undo()
    plan = build_undo_plan(plan_id, stored, CASE, dry_run=dry_run)
    result = apply_plan(plan, str(world.root), str(world.state), retry=NO_WAIT).result
    assert_valid_result(result)
    return result


class TestUndo:
    def test_plan_then_undo_gives_back_the_original_tree(self, world: World) -> None:
        before = snapshot(world.root, skip_work_dirs=True)
        apply_doc(plan_doc(REORG), world.root, world.state)
        assert snapshot(world.root, skip_work_dirs=True) != before
        inverse = PlanStore(str(world.state), "p-1").read_undo()
        assert inverse is not None and inverse["undo_of"] == "p-1"
        result = _undo(world)
        assert result["status"] == "applied" and result["plan_id"] == "p-1.undo"
        assert snapshot(world.root, skip_work_dirs=True) == before

    def test_undo_of_an_overwrite_restores_the_old_content(self, world: World) -> None:
        before = snapshot(world.root, skip_work_dirs=True)
        ops = [
            {
                "type": "copy",
                "from": f"{CASE}/uncategorized/file1.pdf",
                "to": f"{CASE}/uncategorized/file2.pdf",
                "overwrite": True,
            },
            {
                "type": "move",
                "from": f"{CASE}/uncategorized/file3.pdf",
                "to": f"{CASE}/Investigation/report.txt",
                "overwrite": True,
            },
        ]
        apply_doc(plan_doc(ops), world.root, world.state)
        assert _undo(world)["status"] == "applied"
        assert snapshot(world.root, skip_work_dirs=True) == before

    def test_only_the_undo_plan_may_take_items_out_of_the_trash(self, world: World) -> None:
        apply_doc(plan_doc(REORG), world.root, world.state)
        trash = f"{CASE}/{WORK_DIR_NAME}/p-1/trash/4/uncategorized/file3.pdf"
        steal = plan_doc([{"type": "move", "from": trash, "to": f"{CASE}/x.pdf"}], plan_id="p-2")
        assert error_codes(apply_doc(steal, world.root, world.state)) == ["path_reserved"]

    def test_an_agent_plan_cannot_claim_undo_of(self, world: World) -> None:
        apply_doc(plan_doc(REORG), world.root, world.state)
        trash = f"{CASE}/{WORK_DIR_NAME}/p-1/trash/4/uncategorized/file3.pdf"
        forged = plan_doc(
            [{"type": "move", "from": trash, "to": f"{CASE}/x.pdf"}], plan_id="p-2", undo_of="p-1"
        )
        with pytest.raises(PlanError) as refused:
            parse_plan(forged)
        assert refused.value.code is ErrorCode.UNDO_FORGED
        # and the real undo still works afterwards
        assert _undo(world)["status"] == "applied"

    @pytest.mark.parametrize("taken", ["p-1.undo", "p-1.Undo", undo_plan_id("x" * 200)])
    def test_an_agent_plan_cannot_take_an_undo_id(self, world: World, taken: str) -> None:
        with pytest.raises(PlanError) as refused:
            parse_plan(plan_doc([{"type": "mkdir", "path": f"{CASE}/x"}], plan_id=taken))
        assert refused.value.code is ErrorCode.UNDO_FORGED

    def test_a_stored_inverse_is_used_only_for_its_operations(self, world: World) -> None:
        """The id, undo_of and case of an undo plan are fileops' own, whatever is stored."""
        apply_doc(plan_doc(REORG), world.root, world.state)
        stored = PlanStore(str(world.state), "p-1").read_undo()
        assert stored is not None
        plan = build_undo_plan(
            "p-1", dict(stored, plan_id="evil", undo_of="p-9"), CASE, dry_run=True
        )
        assert (plan.plan_id, plan.undo_of) == ("p-1.undo", "p-1")
        with pytest.raises(PlanError) as refused:
            build_undo_plan("p-1", dict(stored, case_name=f"{CASE}-evil"), CASE, dry_run=True)
        assert refused.value.code is ErrorCode.UNDO_UNAVAILABLE

    def test_a_plan_id_of_200_characters_stays_undoable(self, world: World) -> None:
        long_id = "L" * 200
        before = snapshot(world.root, skip_work_dirs=True)
        applied = apply_doc(plan_doc(REORG, plan_id=long_id), world.root, world.state)
        undo_id = applied["undo_plan_id"]
        assert len(undo_id) <= 200 and undo_id != undo_plan_id("L" * 199)
        result = _undo(world, long_id)
        assert result["status"] == "applied" and result["plan_id"] == undo_id
        assert snapshot(world.root, skip_work_dirs=True) == before

    def test_an_undo_can_be_undone(self, world: World) -> None:
        apply_doc(plan_doc(REORG), world.root, world.state)
        after = snapshot(world.root, skip_work_dirs=True)
        assert _undo(world)["status"] == "applied"
        redo = _undo(world, "p-1.undo")
        assert redo["status"] == "applied", redo["errors"]
        assert redo["plan_id"] == "p-1.undo.undo"
        assert snapshot(world.root, skip_work_dirs=True) == after


class TestJournal:
    def test_journal_holds_the_steps_and_the_undo_plan(self, world: World) -> None:
        apply_doc(plan_doc(REORG), world.root, world.state)
        store = PlanStore(str(world.state), "p-1")
        lines = Path(store.journal_path).read_text().splitlines()
        header = json.loads(lines[0])
        assert header["digest"] == parse_plan(plan_doc(REORG)).digest
        assert len(header["steps"]) == sum(1 for line in lines if '"done"' in line)
        assert json.loads(lines[-1])["state"] == "applied"


class TestParallelApply:
    def test_parallel_apply_gives_the_same_tree_as_sequential(
        self, world: World, tmp_path: Path
    ) -> None:
        twin = twin_tree(world.root, tmp_path)
        moves = [
            {
                "type": "move",
                "from": f"{CASE}/uncategorized/file{i}.pdf",
                "to": f"{CASE}/Medical Records/file{i}.pdf",
            }
            for i in range(1, 4)
        ]
        ops = [
            *REORG[:1],
            *moves,
            {
                "type": "move",
                "from": f"{CASE}/Medical Records",
                "to": f"{CASE}/Investigation/medical",
            },
        ]
        one = apply_doc(plan_doc(ops), world.root, world.state)
        many = apply_doc(plan_doc(ops), twin, tmp_path / "state2", parallelism=8)
        assert one["status"] == many["status"] == "applied"
        assert snapshot(world.root) == snapshot(twin)

    def test_a_failure_in_the_parallel_executor_rolls_everything_back(self, world: World) -> None:
        for i in range(40):
            (world.case / "uncategorized" / f"extra{i}.pdf").write_text(f"extra {i}")
        before = snapshot(world.root)
        ops = [{"type": "mkdir", "path": f"{CASE}/sorted"}] + [
            {
                "type": "move",
                "from": f"{CASE}/uncategorized/extra{i}.pdf",
                "to": f"{CASE}/sorted/extra{i}.pdf",
            }
            for i in range(40)
        ]
        intruder = world.case / "sorted" / "extra30.pdf"

        def race(done: int, total: int) -> None:
            if done == 5 and not intruder.exists():
                intruder.write_text("someone else's file")

        result = apply_doc(plan_doc(ops), world.root, world.state, on_step=race, parallelism=8)
        assert result["status"] == "failed"
        assert error_codes(result) == ["tree_changed"]
        # Every move was undone; the folder the plan made stays, as it holds the intruder's file.
        assert intruder.read_text() == "someone else's file"
        assert [line.split(" (")[0] for line in result["remaining"]] == ["mkdir sorted"]
        after = snapshot(world.root)
        del after[f"{CASE}/sorted"], after[f"{CASE}/sorted/extra30.pdf"]
        assert after == before
        again = apply_doc(plan_doc(ops), world.root, world.state)
        assert again == result, "a final failure is stored and returned, not retried"


class TestPause:
    """A daemon shutting down pauses its applies between steps and hands them over."""

    @pytest.mark.parametrize("parallelism", [1, 8])
    def test_a_paused_apply_stops_between_steps_and_the_next_call_finishes_it(
        self, world: World, tmp_path: Path, parallelism: int
    ) -> None:
        twin = twin_tree(world.root, tmp_path)
        ops = notes_ops(60)
        pause = threading.Event()
        seen: list[int] = []

        def stop_at_ten(done: int, total: int) -> None:
            seen.append(done)
            if done == 10:
                pause.set()

        with pytest.raises(ApplyPaused):
            apply_doc(
                plan_doc(ops),
                world.root,
                world.state,
                on_step=stop_at_ten,
                pause=pause,
                parallelism=parallelism,
            )
        written = sorted(p.name for p in (world.case / "notes").iterdir())
        # The mkdir and 9 writes were done; steps running when the pause came finish (and are
        # journaled), none starts after it.
        assert 9 <= len(written) <= 9 + parallelism, written
        assert max(seen) == 1 + len(written)
        store = PlanStore(str(world.state), "p-1")
        assert store.read_result() is None
        journal, state = Journal.resume(store.journal_path)
        journal.close()
        assert state.state == "applying"
        assert len(state.done) == 1 + len(written), "a step that ran was not journaled"

        resumed = apply_doc(plan_doc(ops), world.root, world.state)
        assert resumed["status"] == "applied"
        straight = apply_doc(plan_doc(ops), twin, tmp_path / "state2")
        assert straight["status"] == "applied"
        assert snapshot(world.root, skip_work_dirs=True) == snapshot(twin, skip_work_dirs=True)


class RecordingCheckpoint:
    """A Checkpoint that keeps what it was told, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def journal_created(self, header_line: bytes) -> None:
        self.calls.append(("created", len(header_line)))

    def journal_synced(self, summary: dict[str, object]) -> None:
        self.calls.append(("synced", summary["state"]))


class TestCheckpoints:
    def test_a_one_step_apply_checkpoints_its_header_then_its_end_once(self, world: World) -> None:
        # Each checkpoint is a GCS write in the daemon: closing the journal right after its
        # final sync must not checkpoint the same summary a second time.
        checkpoint = RecordingCheckpoint()
        write = {"type": "write", "path": f"{CASE}/note.txt", "content": "x"}
        result = apply_doc(plan_doc([write]), world.root, world.state, checkpoint=checkpoint)
        assert result["status"] == "applied"
        assert [kind for kind, _ in checkpoint.calls] == ["created", "synced"]
        assert checkpoint.calls[1] == ("synced", "applied")

    def test_a_journal_resumed_in_its_final_state_still_checkpoints_it(self, world: World) -> None:
        write = {"type": "write", "path": f"{CASE}/note.txt", "content": "x"}
        apply_doc(plan_doc([write]), world.root, world.state)
        store = PlanStore(str(world.state), "p-1")
        checkpoint = RecordingCheckpoint()
        journal, state = Journal.resume(store.journal_path, checkpoint.journal_synced)
        journal.close()  # nothing new, but this session never checkpointed it
        assert checkpoint.calls == [("synced", state.state.value)] == [("synced", "applied")]
