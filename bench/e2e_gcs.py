"""4b. End to end at a real GCS's latency: what one applied plan costs when every GCS request
takes as long as it does on real GCS (issue 14).

For each delay (0 and 20 ms by default) a fresh stack like e2e's stack A (bench/e2e.py), except
that everything reaches fake-gcs-server through the counting latency proxy
(tests/emulators/latency_proxy.py), which adds the delay to every request:

- bare: the Pub/Sub round trip through the responder (it touches no GCS: the floor)
- fileops: 1 daemon, a closed loop of one-operation applied plans (write or mkdir, 10 cases
  in turn, as in e2e), after 10 dry runs to warm it up

The GCS requests the daemon sent during the closed loop are counted per plan, by kind. The
figure to watch is fileops p50 minus bare p50 at 20 ms: the time the daemon's sequential GCS
requests add (tests/service/test_gcs_writes.py counts those of one plan, in order).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import BenchError, log
from bench.e2e import (
    Client,
    _check_applied,
    _warm_up,
    bare_client,
    closed_loop,
    one_op_plan,
    stack,
)


def _one_delay(work: Path, count: int, delay: float) -> dict[str, Any]:
    with stack(work, f"stack-gcs-{delay:g}ms", gcs_delay_ms=delay) as st:
        if st.proxy is None:
            raise BenchError("the stack has no latency proxy")
        with bare_client(st) as bare:
            log(f"  {delay:g} ms/GCS request: bare round trip, closed loop of {count}")
            bare_latency = closed_loop(bare, [one_op_plan("gcs-bare", i) for i in range(count)])
        st.start_daemon()
        client = Client("fileops-results", "fileops-plans")
        try:
            _warm_up(client, "warm-gcs")
            plans = [one_op_plan("gcs-lat", i) for i in range(count)]
            st.proxy.reset()
            log(f"  {delay:g} ms/GCS request: fileops, 1 daemon, closed loop of {count}")
            fileops_latency = closed_loop(client, plans)
            _check_applied(client, plans, f"fileops at {delay:g} ms/GCS request")
            requests = st.proxy.requests()
        finally:
            client.close()
    kinds: dict[str, int] = {}
    for request in requests:
        kinds[request.kind] = kinds.get(request.kind, 0) + 1
    return {
        "bare_latency": bare_latency,
        "fileops_latency": fileops_latency,
        "added_p50_ms": fileops_latency["latency_p50_ms"] - bare_latency["latency_p50_ms"],
        "requests_per_plan": len(requests) / count,
        "writes_per_plan": sum(r.is_write for r in requests) / count,
        "requests_by_kind": kinds,
    }


def bench_e2e_gcs(work: Path, count: int, delays_ms: list[float]) -> dict[str, Any]:
    out: dict[str, Any] = {"count": count, "delays_ms": delays_ms, "by_delay": {}}
    for delay in delays_ms:
        figures = _one_delay(work, count, delay)
        out["by_delay"][f"{delay:g}"] = figures
        log(
            f"  {delay:g} ms/GCS request: fileops p50 "
            f"{figures['fileops_latency']['latency_p50_ms']:.1f} ms, bare p50 "
            f"{figures['bare_latency']['latency_p50_ms']:.1f} ms, "
            f"{figures['requests_per_plan']:.1f} GCS requests "
            f"({figures['writes_per_plan']:.1f} writes) per plan"
        )
    return out
