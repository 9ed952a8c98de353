"""9. The approval console: the pending page with 1,000 waiting plans, and the page of a waiting
plan of 10,000 changes, through the whole application (guard, routing, templates) with
Starlette's test client, from an in-memory ledger store on a real projects root.

The plan page asks for the "has the tree changed" check by itself once it is shown (Approve
stays disabled until it answers): the page's time, and the check's (it simulates the plan
again on the tree, as the gate will), are given separately. Median of 5 after
one warm-up request. Target: each page under a second.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import log

PENDING = 1_000
CHANGES = 10_000
RUNS = 5
TARGET_S = 1.0
CASE = "Bench-Case-2024"


def _decisions(store: Any) -> Any:
    from fileops_daemon.service.decisions import DecisionStore

    class Listed(DecisionStore):
        """The waiting index listed from memory (the console lists it from the bucket)."""

        @property
        def listable(self) -> bool:
            return True

        def indexed(self) -> Iterator[str]:
            for name in store.names("awaiting/"):
                yield name.removeprefix("awaiting/").removesuffix(".json")

    return Listed(store)


def _hold(store: Any, plan: dict[str, Any], result: dict[str, Any], digest: str, at: float) -> None:
    """Record ``plan`` as waiting, as the gate does (ledger record and index entry)."""
    from fileops_daemon.contract.plan import parse_plan
    from fileops_daemon.service.decisions import DecisionStore
    from fileops_daemon.service.ledger import AWAITING_APPROVAL, Ledger, Record

    parsed = parse_plan(json.dumps(plan).encode())
    approval = {
        "plan": plan,
        "changes_digest": digest,
        "reasons": [f"{result.get('steps', 0)} file steps, more than 500"],
        "requested_at": at,
        "expires_at": at + 7 * 86400,
        "client_id": "bench",
        "key_ids": [],
    }
    record = Record(
        plan_id=plan["plan_id"],
        digest=parsed.digest,
        case_name=plan["case_name"],
        state=AWAITING_APPROVAL,
        owner="bench",
        token="bench",  # noqa: S106 (a write token, not a secret)
        lease_expires_at=0.0,
        result={**result, "status": "awaiting_approval"},
        approval=approval,
    )
    store.write(
        Ledger.record_name(plan["plan_id"]),
        record.to_json(),
        content_type="application/json",
        if_generation_match=0,
    )
    DecisionStore(store).index(plan["plan_id"], plan["case_name"], at)


def _median_get(client: Any, path: str) -> tuple[float, int]:
    answer = client.get(path)  # warm-up (templates compiled, caches filled)
    assert answer.status_code == 200, answer.text[:500]
    times = []
    for _ in range(RUNS):
        began = time.perf_counter()
        answer = client.get(path)
        times.append(time.perf_counter() - began)
        assert answer.status_code == 200
    return statistics.median(times), len(answer.content)


def bench_console(work: Path) -> dict[str, Any]:
    from starlette.testclient import TestClient

    from fileops_daemon.console.app import build_app
    from fileops_daemon.console.config import ConsoleConfig
    from fileops_daemon.console.desk import Desk
    from fileops_daemon.console.identity import AllowList
    from fileops_daemon.contract.limits import Limits
    from fileops_daemon.contract.plan import parse_plan
    from fileops_daemon.core.volume import LocalVolume
    from fileops_daemon.service.deciding import recheck
    from fileops_daemon.service.ledger import Ledger
    from fileops_daemon.service.memstore import MemoryLedgerStore

    root = work / "projects"
    inbox = root / CASE / "inbox"
    for folder in range(CHANGES // 100):
        (inbox / f"batch-{folder:03}").mkdir(parents=True)
        for i in range(100):
            (inbox / f"batch-{folder:03}" / f"scan-{i:03}.pdf").write_bytes(b"x")
    volume, limits = LocalVolume(str(root)), Limits()
    store = MemoryLedgerStore()
    now = time.time()
    log(f"console: {PENDING:,} waiting plans and one of {CHANGES:,} changes")
    small = {"changes": [{"action": "create_folder", "path": f"{CASE}/x"}], "steps": 1}
    for n in range(PENDING):
        plan = {
            "plan_id": f"wait-{n:04}",
            "case_name": f"Case-{n % 97:02}",
            "dry_run": False,
            "requested_by": f"agent-{n % 7}",
            "reason": "sort the inbox into the usual folders",
            "operations": [{"type": "mkdir", "path": f"Case-{n % 97:02}/x"}],
        }
        _hold(store, plan, small, "0" * 64, now - PENDING + n)
    operations: list[dict[str, Any]] = []
    for folder in range(CHANGES // 100):
        for i in range(100):
            source = f"{CASE}/inbox/batch-{folder:03}/scan-{i:03}.pdf"
            operations.append({"type": "move", "from": source, "to": f"{source}.sorted"})
    big = {
        "plan_id": "big-10k",
        "case_name": CASE,
        "dry_run": False,
        "requested_by": "bench",
        "reason": "rename every scan",
        "operations": operations,
    }
    checked = recheck(parse_plan(json.dumps(big).encode()), "", volume, limits)
    assert checked.digest is not None and len(checked.result["changes"]) == CHANGES
    _hold(store, big, checked.result, checked.digest, now)

    config = ConsoleConfig(
        address="127.0.0.1",
        port=8470,
        approval_key=b"bench-approval-key-0123456789",
        iap_audience="",
        iap_keys_url="",
        approvers=AllowList([]),
        origins=("http://127.0.0.1:8470",),
        operator="bench@localhost",
    )
    desk = Desk(
        Ledger(store, "bench", 0), _decisions(store), volume, limits, config.approval_key, str
    )
    client = TestClient(build_app(config, desk), base_url="http://127.0.0.1:8470")
    pending_s, pending_bytes = _median_get(client, "/pending")
    plan_s, plan_bytes = _median_get(client, "/plans/big-10k")
    check_s, _ = _median_get(client, "/plans/big-10k/check")
    return {
        "pending": {"plans": PENDING, "seconds": pending_s, "bytes": pending_bytes},
        "plan": {"changes": CHANGES, "seconds": plan_s, "bytes": plan_bytes},
        "recheck_seconds": check_s,
        "target_seconds": TARGET_S,
    }


def console_rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The table's rows (bench/run.py's shape)."""
    rows = []
    pending, plan = res["pending"], res["plan"]
    for name, part, extra in (
        (f"9 console: pending page, {pending['plans']:,} waiting plans", pending, ""),
        (
            f"9 console: plan page, {plan['changes']:,} changes",
            plan,
            f"then the tree re-check: {res['recheck_seconds'] * 1000:.0f} ms",
        ),
    ):
        rows.append(
            {
                "benchmark": name,
                "fileops": f"{part['seconds'] * 1000:.1f} ms ({part['bytes'] / 1e6:.1f} MB HTML)",
                "baseline": f"target {res['target_seconds']:.0f} s",
                "ratio": part["seconds"] / res["target_seconds"],
                "ratio_text": f"{part['seconds'] / res['target_seconds']:.2f}x target",
                "target": f"< {res['target_seconds']:.0f} s",
                "met": part["seconds"] < res["target_seconds"],
                "note": extra,
            }
        )
    return rows
