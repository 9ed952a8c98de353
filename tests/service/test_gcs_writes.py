"""How many GCS requests one applied plan waits for (issue 14: at a real GCS's 20 ms a
request, each sequential write on the way to the result is felt by every agent).

The daemon talks to fake-gcs-server through the counting latency proxy
(tests/emulators/latency_proxy.py), which logs each request with the wall-clock time it
arrived and was answered. A request is on the critical path when it was answered before
Pub/Sub accepted the plan's result (the result's server-stamped publish time); writes still
running then (the audit record, written while the result is published) are not. The delay is
large (far above a publish's few milliseconds) so that the split does not depend on timing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.daemon_support import Stack, wait_until
from tests.emulators.latency_proxy import Request, latency_proxy

pytest_plugins = ["tests.conftest_daemon"]

#: Milliseconds the proxy adds to each GCS request.
DELAY_MS = 150
#: The target of issue 14: sequential GCS writes for an applied one-step plan.
MAX_SEQUENTIAL_WRITES = 4


def one_step_plan(case: str, plan_id: str) -> dict[str, Any]:
    return {
        "plan_id": plan_id,
        "case_name": case,
        "dry_run": False,
        "requested_by": "test",
        "operations": [{"type": "write", "path": f"{case}/{plan_id}.txt", "content": "x\n"}],
    }


def sequential_groups(requests: list[Request]) -> list[list[Request]]:
    """Requests in rounds: one round holds the requests that overlapped in time."""
    groups: list[list[Request]] = []
    end = 0.0
    for request in sorted(requests, key=lambda r: r.started):
        if groups and request.started < end:
            groups[-1].append(request)
            end = max(end, request.ended)
        else:
            groups.append([request])
            end = request.ended
    return groups


def describe(requests: list[Request], published: float) -> str:
    lines = []
    for request in requests:
        where = "critical" if request.ended <= published else "after the result"
        path = request.path.split("?")[0]
        name = f" [{request.name}]" if request.name else ""
        lines.append(f"  {request.method:6} {path}{name}  ({where})")
    return "\n".join(lines)


def test_an_applied_one_step_plan_waits_for_at_most_four_gcs_writes(
    make_stack: Callable[..., Stack],
) -> None:
    stack0 = make_stack()  # only for its emulators' fake-gcs-server address
    with latency_proxy(stack0.gcs_endpoint, DELAY_MS) as proxy:
        stack = make_stack(proxy.endpoint, name="proxied")
        stack.bootstrap()
        case = "Writes-Case"
        stack.case(case)
        stack.start_daemon()
        # The first plan of a case meets no case lease; the measured one follows another's.
        stack.publish(one_step_plan(case, "writes-warm"))
        stack.results.wait_plan("writes-warm", timeout=60)
        wait_until(lambda: len(stack.audit_records()) == 1, 30, "the warm-up's audit record")
        time.sleep(4 * DELAY_MS / 1000)  # let anything still running settle
        proxy.reset()

        sent = time.time()
        stack.publish(one_step_plan(case, "writes-measured"))
        (result,) = stack.results.wait_plan("writes-measured", timeout=60)
        assert result["status"] == "applied", result
        published = next(
            r.published for r in stack.results.received if r.result["plan_id"] == "writes-measured"
        )
        # Never lost: the audit record of the measured plan arrives (after its result).
        wait_until(lambda: len(stack.audit_records()) == 2, 30, "the audit record")
        time.sleep(2 * DELAY_MS / 1000)
        seen = [r for r in proxy.requests() if r.started >= sent]

    critical = [r for r in seen if r.ended <= published]
    rounds = sequential_groups([r for r in critical if r.is_write])
    story = describe(seen, published)
    print(f"GCS requests of one applied one-step plan:\n{story}")
    assert len(rounds) <= MAX_SEQUENTIAL_WRITES, (
        f"{len(rounds)} sequential GCS writes before the result (target "
        f"{MAX_SEQUENTIAL_WRITES}):\n{story}"
    )
    # The audit record is one of the writes, whether or not it was on the way.
    assert any("/upload/" in r.path and stack.audit_bucket in r.path for r in seen), story
