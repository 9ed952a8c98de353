"""Following a plan through its ledger record (status --follow, submit --wait's progress)."""

from __future__ import annotations

import io
import threading
from dataclasses import replace
from typing import Any

from fileops_daemon.cli.follow import ProgressLines, follow_record, progress_text
from fileops_daemon.service.ledger import Record

CLAIMED = Record(
    plan_id="p-1",
    digest="d",
    case_name="c",
    state="claimed",
    owner="daemon-a",
    token="t",
    lease_expires_at=1e12,
)
APPLIED = {"plan_id": "p-1", "status": "applied"}


def step(done: int, total: int) -> Record:
    return replace(CLAIMED, progress={"steps_done": done, "steps_total": total})


class Replay:
    """A ledger read that returns the given records in turn, then the last one forever."""

    def __init__(self, *records: Record | None) -> None:
        self.records = list(records)
        self.reads = 0

    def __call__(self, plan_id: str) -> Record | None:
        assert plan_id == "p-1"
        self.reads += 1
        return self.records.pop(0) if len(self.records) > 1 else self.records[0]


class TestProgressText:
    def test_says_where_the_plan_stands(self) -> None:
        assert "not in the ledger yet" in progress_text("p-1", None)
        assert progress_text("p-1", step(3, 10)) == "p-1: applying, 3/10 steps, on daemon-a"
        assert progress_text("p-1", CLAIMED) == "p-1: applying, checking, on daemon-a"
        released = replace(step(3, 10), lease_expires_at=0.0)
        assert "lease released" in progress_text("p-1", released)
        expired = replace(step(3, 10), lease_expires_at=1.0)
        assert "lease expired" in progress_text("p-1", expired)
        done = replace(CLAIMED, state="done", result=APPLIED)
        assert progress_text("p-1", done) == "p-1: applied"
        waiting = replace(CLAIMED, state="awaiting_approval", lease_expires_at=0.0)
        assert progress_text("p-1", waiting) == (
            "p-1: awaiting approval (fileops pending; fileops approve p-1)"
        )


class TestFollow:
    def test_prints_each_change_once_until_the_plan_is_settled(self) -> None:
        done = replace(CLAIMED, state="done", result=APPLIED)
        read = Replay(None, step(0, 4), step(0, 4), step(2, 4), step(4, 4), done)
        out = io.StringIO()
        record = follow_record(read, "p-1", out, sleep=lambda _: None)
        assert record is done
        assert out.getvalue().splitlines()[1:] == [
            "p-1: applying, 0/4 steps, on daemon-a",
            "p-1: applying, 2/4 steps, on daemon-a",
            "p-1: applying, 4/4 steps, on daemon-a",
            "p-1: applied",
        ]
        assert read.reads == 6

    def test_gives_up_after_the_timeout(self) -> None:
        now = [0.0]

        def sleep(seconds: float) -> None:
            now[0] += seconds

        out = io.StringIO()
        record = follow_record(
            Replay(step(1, 9)), "p-1", out, timeout=5, poll=2, clock=lambda: now[0], sleep=sleep
        )
        assert record is None
        assert now[0] == 5.0
        assert out.getvalue().count("\n") == 1


class TestProgressLines:
    def test_prints_progress_while_the_caller_waits_and_stops_after(self) -> None:
        seen = threading.Event()

        def read(plan_id: str) -> Any:
            seen.set()
            return step(5, 10)

        out = io.StringIO()
        with ProgressLines(read, "p-1", out, poll=0.01):
            assert seen.wait(5)
        printed = out.getvalue()
        assert printed.splitlines()[0] == "p-1: applying, 5/10 steps, on daemon-a"

    def test_a_failed_read_skips_a_line_and_does_not_end_the_wait(self) -> None:
        calls = []

        def read(plan_id: str) -> Any:
            calls.append(plan_id)
            if len(calls) == 1:
                raise OSError("flaky")
            return step(1, 2)

        out = io.StringIO()
        with ProgressLines(read, "p-1", out, poll=0.01):
            for _ in range(500):  # at most 5 s
                if len(calls) >= 3:
                    break
                threading.Event().wait(0.01)
        assert out.getvalue().splitlines()[0] == "p-1: applying, 1/2 steps, on daemon-a"
