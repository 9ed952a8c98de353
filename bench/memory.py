"""5. The daemon's memory: idle, and at its peak applying one 10,000-move plan.

A fresh stack as in e2e (pstest + fake-gcs-server, bootstrap, one ``fileops run`` daemon with
the environment of scripts/run_stack.py). Idle: VmRSS and VmHWM 5 s after the daemon started,
before any plan (what a waiting daemon holds). Then 10 dry runs warm it up, and the 10,000-move
plan is published; its VmRSS is sampled every 20 ms while it is applied, and VmHWM read after.

Targets: idle VmRSS ≤ 70 MiB; the peak (VmHWM after the plan) ≤ idle + 8 KB per operation.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from bench.common import RssSampler, memory_status
from bench.e2e import Client, _check_applied, _warm_up, stack
from bench.fixtures import MoveFixture

IDLE_AFTER_S = 5.0


def bench_memory(work: Path, fixture: MoveFixture) -> dict[str, Any]:
    with stack(work, "stack-mem") as st:
        shutil.copytree(fixture.template / fixture.case, st.root / fixture.case, symlinks=True)
        daemon = st.start_daemon()
        time.sleep(max(0.0, IDLE_AFTER_S - (time.perf_counter() - st.started_at[daemon.pid])))
        idle = memory_status(daemon.pid)
        client = Client("fileops-results", "fileops-plans")
        try:
            _warm_up(client, "warm-mem")
            big = dict(fixture.plan, plan_id="bench-rss-10k")
            before = memory_status(daemon.pid)
            with RssSampler(daemon.pid) as sampler:
                seconds = client.round_trip(big, timeout=600)
            _check_applied(client, [big], "10,000-move plan")
            after = memory_status(daemon.pid)
        finally:
            client.close()
    return {
        "rss_idle_kib": idle,
        "rss_10k": {
            "seconds": seconds,
            "operations": len(big["operations"]),
            "before": before,
            "after": after,
            "sampled_max_rss_kib": sampler.max_rss_kib,
            "plan_bytes": len(json.dumps(big, separators=(",", ":"))),
        },
    }
