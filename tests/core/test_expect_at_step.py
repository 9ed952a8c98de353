"""``expect`` holds at the step, not only at the check: a file replaced between the simulation
and its step is refused (``precondition_failed``) and nothing is half-done; and a folder's walk
stops once the plan's step budget is spent."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from fileops_daemon.contract.limits import Limits
from fileops_daemon.contract.plan import parse_plan
from fileops_daemon.core.execute import apply_plan, dry_run
from fileops_daemon.core.outcome import RunEnd
from fileops_daemon.core.tree import PosixTreeSource
from fileops_daemon.core.volume import LocalVolume, TreeSource
from tests.support import CASE, NO_WAIT, error_codes, plan_doc, snapshot

ORIGINAL = b"the scan the agent saw"


class EditsAfterTheCheck:
    """A checkpoint whose journal_created runs between the simulation and the first step."""

    def __init__(self, edit: Any) -> None:
        self.edit = edit

    def journal_created(self, header_line: bytes) -> None:
        self.edit()

    def journal_synced(self, summary: dict[str, Any]) -> None:
        pass


def operation(kind: str, expect: dict[str, Any]) -> dict[str, Any]:
    source = f"{CASE}/in/x.pdf"
    if kind == "move":
        return {"type": "move", "from": source, "to": f"{CASE}/out/x.pdf", "expect": expect}
    if kind == "copy":
        return {"type": "copy", "from": source, "to": f"{CASE}/out/x.pdf", "expect": expect}
    return {"type": "delete", "path": source, "expect": expect}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("kind", ["move", "copy", "delete"])
@pytest.mark.parametrize(
    ("expect", "edited"),
    [
        ({"size": len(ORIGINAL), "sha256": sha(ORIGINAL)}, b"the scan someone else made"[:22]),
        ({"size": len(ORIGINAL)}, ORIGINAL + b", and more"),
    ],
    ids=["same-size-other-bytes", "grew"],
)
def test_a_file_changed_between_check_and_step_is_refused(
    tmp_path: Path, kind: str, expect: dict[str, Any], edited: bytes
) -> None:
    root = tmp_path / "projects"
    (root / CASE / "in").mkdir(parents=True)
    (root / CASE / "out").mkdir()
    source = root / CASE / "in" / "x.pdf"
    source.write_bytes(ORIGINAL)
    os.utime(source, ns=(1_000_000_000, 1_000_000_000))  # an edit always shows in the mtime

    def edit() -> None:
        source.write_bytes(edited)

    plan = parse_plan(plan_doc([operation(kind, expect)], plan_id=f"exp-{kind}"))
    before_edit = snapshot(root)
    outcome = apply_plan(
        plan, str(root), str(tmp_path / "state"), retry=NO_WAIT, checkpoint=EditsAfterTheCheck(edit)
    )

    assert outcome.end is RunEnd.ROLLED_BACK, outcome.result
    assert error_codes(outcome.result) == ["precondition_failed"]
    assert source.read_bytes() == edited  # their edit stays where it was, untouched
    after = {k: v for k, v in snapshot(root).items() if ".fileops" not in k}
    expected = dict(before_edit, **{f"{CASE}/in/x.pdf": ("file", sha(edited))})
    assert after == expected


def test_an_unchanged_file_with_expect_still_moves(tmp_path: Path) -> None:
    root = tmp_path / "projects"
    (root / CASE / "in").mkdir(parents=True)
    (root / CASE / "out").mkdir()
    (root / CASE / "in" / "x.pdf").write_bytes(ORIGINAL)
    ops = [operation("move", {"size": len(ORIGINAL), "sha256": sha(ORIGINAL)})]
    plan = parse_plan(plan_doc(ops, plan_id="exp-ok"))
    outcome = apply_plan(plan, str(root), str(tmp_path / "state"), retry=NO_WAIT)
    assert outcome.end is RunEnd.APPLIED, outcome.result
    assert (root / CASE / "out" / "x.pdf").read_bytes() == ORIGINAL


class CountingSource:
    """The local tree source, counting the items its listings hand out."""

    def __init__(self, case_dir: str) -> None:
        self.inner = PosixTreeSource(case_dir)
        self.listed = 0

    def list(self, origin: str) -> Any:
        for item in self.inner.list(origin):
            self.listed += 1
            yield item

    def size(self, origin: str) -> int:
        return self.inner.size(origin)

    def sha256(self, origin: str, version: str | None = None) -> str:
        return self.inner.sha256(origin, version)

    def stamp(self, origin: str, sha256: str | None) -> str | None:
        return self.inner.stamp(origin, sha256)


class CountingVolume(LocalVolume):
    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.sources: list[CountingSource] = []

    def tree_source(self, case_dir: str) -> TreeSource:
        source = CountingSource(case_dir)
        self.sources.append(source)
        return source


@pytest.mark.parametrize("operation_type", ["move", "delete"])
def test_a_folder_past_the_step_budget_is_refused_without_listing_it_all(
    tmp_path: Path, operation_type: str
) -> None:
    root = tmp_path / "projects"
    big = root / CASE / "big"
    for sub in range(3):
        (big / f"s{sub}").mkdir(parents=True)
        for i in range(400):
            (big / f"s{sub}" / f"f{i:04}.txt").write_bytes(b"x")
    if operation_type == "move":
        ops = [{"type": "move", "from": f"{CASE}/big", "to": f"{CASE}/moved"}]
    else:
        ops = [{"type": "delete", "path": f"{CASE}/big"}]
    plan = parse_plan(plan_doc(ops, plan_id="budget", dry_run=True))
    volume = CountingVolume(str(root))
    limits = Limits(max_steps=100, max_deletes=10_000)

    outcome = dry_run(plan, str(root), limits=limits, volume=volume)

    assert outcome.end is RunEnd.REJECTED
    assert error_codes(outcome.result) == ["limit_exceeded"]
    listed = sum(source.listed for source in volume.sources)
    assert listed <= 110, listed  # the case folder, big/, and one folder's first ~100 items
    assert listed < 1200


def test_a_folder_within_the_budget_is_walked_whole(tmp_path: Path) -> None:
    root = tmp_path / "projects"
    big = root / CASE / "big"
    (big / "s").mkdir(parents=True)
    for i in range(47):
        (big / "s" / f"f{i:02}.txt").write_bytes(b"x")
    ops = [{"type": "move", "from": f"{CASE}/big", "to": f"{CASE}/moved"}]
    plan = parse_plan(plan_doc(ops, plan_id="budget-ok", dry_run=True))
    # 1 + 1 (mkdir moved, moved/s) + 47 renames + 2 rmdirs = 51 steps
    assert dry_run(plan, str(root), limits=Limits(max_steps=51)).end is RunEnd.PLANNED
    refused = dry_run(plan, str(root), limits=Limits(max_steps=50))
    assert error_codes(refused.result) == ["limit_exceeded"]
