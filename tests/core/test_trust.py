"""State read back (a local journal, a ledger checkpoint) passes the plan's gate before use.

Hostile: a crafted journal header or checkpoint that points outside the case, into another
case, at another case folder, or at paths the plan never named, is refused with
``state_invalid`` and nothing is touched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from fileops_daemon.contract.plan import parse_plan
from fileops_daemon.core.journal import Journal
from fileops_daemon.core.store import PlanStore
from fileops_daemon.core.trust import StateInvalidError
from tests.conftest import World
from tests.support import CASE, apply_doc, error_codes, plan_doc, snapshot

MOVE = [
    {"type": "mkdir", "path": f"{CASE}/Medical Records/2024"},
    {
        "type": "move",
        "from": f"{CASE}/uncategorized/file1.pdf",
        "to": f"{CASE}/Medical Records/2024/file1.pdf",
    },
    {"type": "write", "path": f"{CASE}/notes.txt", "content": "hello"},
]


def _header(world: World, **changes: Any) -> dict[str, Any]:
    plan = parse_plan(plan_doc(MOVE))
    header: dict[str, Any] = {
        "v": 1,
        "plan_id": plan.plan_id,
        "case_name": CASE,
        "case_folder": CASE,
        "digest": plan.digest,
        "created_at": "2026-01-01T00:00:00+00:00",
        "operations": [
            {"index": i, "type": op["type"], "outcome": "ok", "message": "ok"}
            for i, op in enumerate(MOVE)
        ],
        "changes": [],
        "undo": {},
        "steps": [
            {"k": "mkdir", "d": ["Medical Records", "2024"], "o": 0},
            {
                "k": "rename",
                "s": ["uncategorized", "file1.pdf"],
                "d": ["Medical Records", "2024", "file1.pdf"],
                "o": 1,
            },
            {"k": "write", "d": ["notes.txt"], "o": 2, "c": "aGVsbG8="},
        ],
    }
    header.update(changes)
    return header


def _plant(world: World, header: dict[str, Any], marks: list[dict[str, Any]] | None = None) -> None:
    store = PlanStore(str(world.state), "p-1")
    os.makedirs(store.folder, exist_ok=True)
    lines = [json.dumps(header)] + [json.dumps(mark) for mark in marks or []]
    Path(store.journal_path).write_text("\n".join(lines) + "\n")


def _everything(world: World) -> dict[str, tuple[str, ...]]:
    """The projects root, the sibling case and the folder outside it (not our state dir)."""
    tree = snapshot(world.base)
    return {rel: entry for rel, entry in tree.items() if rel.split(os.sep)[0] != "state"}


class TestAReadBackJournalIsCheckedLikeAPlan:
    def test_an_honest_planted_journal_resumes(self, world: World) -> None:
        """The gate lets through what the simulation itself would have written."""
        _plant(world, _header(world))
        result = apply_doc(plan_doc(MOVE), world.root, world.state)
        assert result["status"] == "applied", result["errors"]
        assert (world.case / "Medical Records" / "2024" / "file1.pdf").exists()

    @pytest.mark.parametrize(
        ("name", "changes"),
        [
            ("case-folder-above-root", {"case_folder": ".."}),
            ("case-folder-other-case", {"case_folder": f"{CASE}-evil"}),
            ("case-folder-outside", {"case_folder": "../outside"}),
            (
                "rename-into-parent-of-root",
                {
                    "steps": [
                        {
                            "k": "rename",
                            "s": ["uncategorized", "file1.pdf"],
                            "d": ["..", "x"],
                            "o": 1,
                        }
                    ]
                },
            ),
            (
                "rename-from-other-case",
                {
                    "steps": [
                        {"k": "rename", "s": ["..", f"{CASE}-evil", "loot.txt"], "d": ["x"], "o": 1}
                    ]
                },
            ),
            (
                "rename-absolute",
                {
                    "steps": [
                        {
                            "k": "rename",
                            "s": ["uncategorized", "file1.pdf"],
                            "d": ["", "tmp", "x"],
                            "o": 1,
                        }
                    ]
                },
            ),
            (
                "rename-not-named-by-the-operation",
                {
                    "steps": [
                        {"k": "rename", "s": ["Investigation", "report.txt"], "d": ["x"], "o": 1}
                    ]
                },
            ),
            (
                "rename-into-another-plans-trash",
                {
                    "steps": [
                        {
                            "k": "rename",
                            "s": ["uncategorized", "file1.pdf"],
                            "d": [".fileops", "p-9", "trash", "1", "x"],
                            "o": 1,
                        }
                    ]
                },
            ),
            (
                "write-other-content",
                {"steps": [{"k": "write", "d": ["notes.txt"], "o": 2, "c": "ZXZpbA=="}]},
            ),
            ("unknown-step-kind", {"steps": [{"k": "unlink", "d": ["notes.txt"], "o": 2}]}),
            (
                "malformed-source-version",
                {
                    "steps": [
                        {
                            "k": "rename",
                            "s": ["uncategorized", "file1.pdf"],
                            "d": ["Medical Records", "2024", "file1.pdf"],
                            "o": 1,
                            "v": "g:12; rm -rf",
                        }
                    ]
                },
            ),
            (
                "version-on-a-step-without-source",
                {"steps": [{"k": "mkdir", "d": ["Medical Records", "2024"], "o": 0, "v": "g:1"}]},
            ),
            ("operation-out-of-range", {"steps": [{"k": "mkdir", "d": ["x"], "o": 99}]}),
            ("steps-not-a-list", {"steps": "nope"}),
            ("other-plan", {"plan_id": "p-2"}),
        ],
    )
    def test_a_crafted_journal_header_is_refused_and_nothing_changes(
        self, world: World, name: str, changes: dict[str, Any]
    ) -> None:
        _plant(world, _header(world, **changes))
        before = _everything(world)
        result = apply_doc(plan_doc(MOVE), world.root, world.state)
        assert (result["status"], error_codes(result)) == ("rejected", ["state_invalid"]), result
        assert _everything(world) == before

    @pytest.mark.parametrize(
        "marks",
        [
            [{"done": 7}],
            [{"done": "0"}],
            [{"state": "exploded"}],
            [{"state": "rolling_back", "code": "not_a_code"}],
            [{"state": "rolling_back", "half_run": [42]}],
        ],
    )
    def test_crafted_progress_marks_are_refused(
        self, world: World, marks: list[dict[str, Any]]
    ) -> None:
        _plant(world, _header(world), marks)
        before = _everything(world)
        result = apply_doc(plan_doc(MOVE), world.root, world.state)
        assert error_codes(result) == ["state_invalid"], result
        assert _everything(world) == before

    def test_a_torn_header_is_refused_not_a_crash(self, world: World) -> None:
        store = PlanStore(str(world.state), "p-1")
        os.makedirs(store.folder)
        Path(store.journal_path).write_text('{"plan_id": "p-1", "steps": [\n')
        result = apply_doc(plan_doc(MOVE), world.root, world.state)
        assert error_codes(result) == ["state_invalid"], result


class TestACheckpointIsCheckedBeforeItIsExpanded:
    def test_a_huge_range_is_refused_before_any_line_is_written(self, tmp_path: Path) -> None:
        header = json.dumps({"steps": [{"k": "mkdir", "d": ["x"], "o": 0}]}).encode() + b"\n"
        path = tmp_path / "journal.jsonl"
        with pytest.raises(StateInvalidError):
            Journal.seed(str(path), header, {"done": [[0, 10**12]]})
        assert not path.exists()

    @pytest.mark.parametrize(
        "progress",
        [{"done": [[1, 0]]}, {"done": "all"}, {"undone": [[0]]}, {"info": ["x"]}, []],
    )
    def test_malformed_progress_is_refused(self, tmp_path: Path, progress: Any) -> None:
        header = json.dumps({"steps": [{"k": "mkdir", "d": ["x"], "o": 0}] * 2}).encode()
        with pytest.raises(StateInvalidError):
            Journal.seed(str(tmp_path / "j.jsonl"), header + b"\n", progress)
