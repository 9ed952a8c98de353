"""Hostile tests through the daemon on the emulators: forged undo, takeover, crafted state.

A compromised agent can publish to the plans topic, and anyone who can write to the state
bucket can plant a ledger checkpoint or a journal: neither may move anything outside its case,
block an undo, or make a result contradict the tree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.daemon_support import Stack
from tests.support import CASE

pytest_plugins = ["tests.conftest_daemon"]


def error_codes(result: dict[str, Any]) -> list[str]:
    return [error["code"] for error in result["errors"]]


def sample_case(stack: Stack) -> Path:
    case = stack.case(
        CASE,
        {
            "uncategorized/file1.pdf": "one\n",
            "uncategorized/file2.pdf": "two\n",
            "Investigation/report.txt": "report\n",
        },
    )
    stack.case("Other-Case", {"secret.txt": "not yours\n"})
    return case


REORG: list[dict[str, Any]] = [
    {"type": "mkdir", "path": f"{CASE}/Medical Records"},
    {
        "type": "move",
        "from": f"{CASE}/uncategorized/file1.pdf",
        "to": f"{CASE}/Medical Records/file1.pdf",
    },
    {"type": "delete", "path": f"{CASE}/uncategorized/file2.pdf"},
]


def plan(plan_id: str, ops: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"plan_id": plan_id, "case_name": CASE, "dry_run": False, "operations": ops, **extra}


class TestUndoCannotBeForgedOrBlocked:
    def test_forged_undo_plans_are_refused_and_the_real_undo_still_works(
        self, stack: Stack
    ) -> None:
        stack.bootstrap()
        sample_case(stack)
        before = stack.tree()
        stack.start_daemon()
        stack.publish(plan("reorg-1", REORG))
        applied = stack.results.wait_plan("reorg-1", 30)[-1]
        assert applied["status"] == "applied", applied
        after = stack.tree()

        trash = f"{CASE}/.fileops/reorg-1/trash/2/uncategorized/file2.pdf"
        steal = plan(
            "steal-1",
            [{"type": "move", "from": trash, "to": f"{CASE}/stolen.pdf"}],
            undo_of="reorg-1",
        )
        block = plan("reorg-1.undo", [{"type": "mkdir", "path": f"{CASE}/squatter"}])
        for forged in (steal, block):
            stack.publish(forged)
            [refused] = stack.results.wait_plan(forged["plan_id"], 30)
            assert refused["status"] == "rejected", refused
            assert error_codes(refused) == ["undo_forged"]
        assert stack.tree() == after, "a forged undo changed the tree"
        assert stack.ledger_record("reorg-1.undo") is None, "a forged plan took the undo id"

        undone = stack.cli("undo", "reorg-1", "--apply", "--wait", "--json", "--timeout", "30")
        assert undone.returncode == 0, undone.stderr
        result = json.loads(undone.stdout)
        assert (result["plan_id"], result["status"]) == ("reorg-1.undo", "applied"), result
        assert {k: v for k, v in stack.tree().items() if ".fileops" not in k} == {
            k: v for k, v in before.items() if ".fileops" not in k
        }

    def test_a_plan_id_of_200_characters_is_undone_by_request(self, stack: Stack) -> None:
        stack.bootstrap()
        sample_case(stack)
        stack.start_daemon()
        long_id = "x" * 200
        stack.publish(plan(long_id, REORG[:2]))
        applied = stack.results.wait_plan(long_id, 30)[-1]
        assert applied["status"] == "applied", applied
        undo_id = applied["undo_plan_id"]
        assert len(undo_id) <= 200
        stack.publish({"undo_of": long_id, "case_name": CASE, "plan_id": undo_id, "dry_run": False})
        undone = stack.results.wait_plan(undo_id, 30)[-1]
        assert undone["status"] == "applied", undone
