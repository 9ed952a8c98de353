"""Case order through faults (docs/daemon.md, "Order and redelivery"), on every Pub/Sub emulator.

One case's plans apply in the order they were published, and plan k+1 of a case never starts
before plan k has a final answer: not after a nack (the client library hands the key's next
message over at once), not when publishers forget the ordering key or spell the case another
way, not across daemons. A plan that has to wait holds no worker thread, leaves no claim of
its own, is no takeover, and says why it waits.
"""

from __future__ import annotations

import itertools
import time
import unicodedata
from typing import Any

import pytest

from tests.daemon_support import DaemonProcess, Stack, many_writes_plan, token_plan
from tests.service.test_daemon import event_time

pytest_plugins = ["tests.conftest_daemon"]


def spans(stack: Stack, plan_id: str) -> list[tuple[float, float]]:
    """(start, answer) times of every apply of ``plan_id``, over all daemons' logs."""
    out = []
    for daemon in stack.daemons:
        starts = daemon.events("plan.applying", plan_id=plan_id)
        answers = daemon.events("plan.answered", plan_id=plan_id)
        for start in starts:
            later = [event_time(a) for a in answers if event_time(a) >= event_time(start)]
            out.append((event_time(start), min(later) if later else float("inf")))
    return out


def answered_at(stack: Stack, plan_id: str) -> float:
    times = [event_time(e) for e in stack.all_events("plan.answered", plan_id=plan_id)]
    assert times, f"plan {plan_id} was never answered:\n{stack.logs_tail()}"
    return min(times)


def first_start(stack: Stack, plan_id: str) -> float:
    times = [event_time(e) for e in stack.all_events("plan.applying", plan_id=plan_id)]
    assert times, f"plan {plan_id} never started:\n{stack.logs_tail()}"
    return min(times)


def test_a_case_waits_for_its_plan_whose_answer_failed(stack: Stack) -> None:
    # The audit bucket is missing at first: plan 1 applies but cannot be answered and is
    # nacked. The client library then hands plan 2 of the same ordering key to the daemon at
    # once; plan 2 must wait until plan 1 has its answer.
    stack.bootstrap(FILEOPS_AUDIT_BUCKET="", FILEOPS_MAX_DELIVERY_ATTEMPTS="100")
    case = "Order-Case"
    stack.case(case, {"token-0.txt": "token\n"})
    plans = [token_plan(case, k) for k in (1, 2, 3)]
    daemon = stack.start_daemon()
    for plan in plans:
        stack.publish(plan)
    daemon.wait_for("plan.unhandled_error", 30, plan_id=plans[0]["plan_id"])
    time.sleep(3.0)  # a few nack and redelivery rounds while plan 1 stays unanswered
    assert not daemon.events("plan.applying", plan_id=plans[1]["plan_id"]), (
        f"plan 2 started while plan 1 had no answer:\n{daemon.tail()}"
    )
    # Google's emulator hands plan 2 over while plan 1 is out (pstest keeps one message of a
    # key out at a time): there plan 2 must have waited, and said why.
    waited = daemon.events("plan.waiting", plan_id=plans[1]["plan_id"], reason="case_blocked")
    if stack.emulators.pubsub_kind == "gcloud":
        assert waited, f"plan 2 never reached the daemon while plan 1 was out:\n{daemon.tail()}"
    stack.storage.create_bucket(stack.audit_bucket)

    stack.results.wait_count(3, timeout=60)
    results = {r["plan_id"]: r for r in stack.results.results()}
    assert [results[p["plan_id"]]["status"] for p in plans] == ["applied"] * 3, results
    assert sorted(p.name for p in (stack.root / case).iterdir()) == ["token-3.txt"]
    for earlier, later in itertools.pairwise(plans):
        assert first_start(stack, later["plan_id"]) >= answered_at(stack, earlier["plan_id"])
    assert not stack.all_events("lease.takeover"), "a plan's own lease counted as a takeover"
    nacks = daemon.events("plan.nacked", plan_id=plans[1]["plan_id"])
    assert all(n["reason"] == "case_blocked" for n in nacks), nacks
    assert len(daemon.events("plan.nacked", plan_id=plans[0]["plan_id"])) <= 6, (
        "plan 1 was bounced back without a pause between attempts"
    )


def _slow_and_quick(case: str) -> tuple[dict[str, Any], dict[str, Any]]:
    slow = many_writes_plan(case, "slow-1", 300, folder="slow")
    quick = many_writes_plan(case, "quick-1", 3, folder="quick")
    return slow, quick


@pytest.mark.parametrize(
    ("spelling", "daemons"),
    [("no-key", 1), ("nfd-key", 1), ("no-key", 2)],
)
def test_plans_of_one_case_never_interleave_whatever_the_ordering_key(
    stack: Stack, spelling: str, daemons: int
) -> None:
    # A minute of lease: a plan that waited on a claim would show as a minute's stall.
    slow_env = {"FILEOPS_LEASE_SECONDS": "60", "FILEOPS_APPLY_MAX_STEPS_PER_SECOND": "100"}
    stack.bootstrap()
    case = "Café-Dossier"  # NFC on disk
    stack.case(case, {"keep.txt": "keep\n"})
    slow, quick = _slow_and_quick(case)
    if spelling == "nfd-key":
        nfd = unicodedata.normalize("NFD", case)
        quick = {
            **quick,
            "case_name": nfd,
            "operations": [
                {**op, "path": op["path"].replace(case, nfd, 1)} for op in quick["operations"]
            ],
        }
    expected = stack.reference_after([slow, quick])
    started: list[DaemonProcess] = [
        stack.start_daemon(name, **slow_env) for name in ("a", "b")[:daemons]
    ]
    begun = time.monotonic()
    # Without a key, or each under its own spelling of the case (two keys for one case).
    slow_id = stack.publish(slow, ordering_key="" if spelling == "no-key" else None)
    quick_id = stack.publish(quick, ordering_key="" if spelling == "no-key" else None)
    assert slow_id and quick_id

    stack.results.wait_count(2, timeout=50)
    took = time.monotonic() - begun
    results = {r["plan_id"]: r for r in stack.results.results()}
    assert {p: r["status"] for p, r in results.items()} == {
        "slow-1": "applied",
        "quick-1": "applied",
    }, results
    assert took < 40, f"took {took:.0f}s: a plan waited on a lease"
    assert stack.tree() == expected
    runs = sorted(spans(stack, "slow-1") + spans(stack, "quick-1"))
    assert len(runs) == 2, runs
    assert runs[0][1] <= runs[1][0], f"the two plans of one case overlapped: {runs}"
    waits = stack.all_events("plan.waiting")
    assert waits and all(w.get("reason") for w in waits), waits
    assert not stack.all_events("lease.takeover")
    for plan_id in ("slow-1", "quick-1"):
        record = stack.ledger_record(plan_id)
        assert record is not None and record["state"] == "done", record
        assert record["takeovers"] == 0 and record["attempts"] == 1, record
    assert all(d.alive() for d in started)
