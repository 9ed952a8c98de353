"""4c. Plans per second across daemons and worker threads, at a real GCS's latency (issue 21).

Each setting gets a fresh stack like e2e_gcs's (bench/e2e.py: pstest, fake-gcs-server behind
the latency proxy, which adds the delay to every GCS request of the stack), its daemons
started with ``FILEOPS_CONCURRENCY``, 10 warm-up dry runs, then a burst of one-operation
applied plans round-robin over 50 cases (one case's plans apply in order: disjoint cases keep
that chain short). Plans per second = plans / (last result - first publish). The CPU the
stack used, and how busy the machine was, are read beside it: on a small machine the daemons
share its cores, which caps their sum. How many plans each daemon answered is counted too
(pstest hands most messages to its first subscriber; ``--gcloud-pubsub`` runs Google's
official emulator instead, which spreads them by ordering key).

``python -m bench.scale --plans 150 --ms 20 --gcloud-pubsub``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import log
from bench.e2e import Client, _check_applied, _warm_up, cpu_of_stack, stack

#: Disjoint cases: the burst's plans go round-robin over these (e2e's 10 would chain a case's
#: plans one after another, and that chain, not the daemons, would set the pace).
CASES = [f"Scale-Case-{i:03d}" for i in range(50)]


def scale_plan(tag: str, i: int) -> dict[str, Any]:
    case = CASES[i % len(CASES)]
    return {
        "plan_id": f"{tag}-{i:04d}",
        "case_name": case,
        "dry_run": False,
        "requested_by": "bench",
        "reason": "benchmark",
        "operations": [{"type": "mkdir", "path": f"{case}/notes/{tag}-{i:04d}"}],
    }


#: (daemons, FILEOPS_CONCURRENCY) per setting.
SETTINGS = ((1, 1), (1, 8), (1, 4), (2, 4), (4, 4))
#: The issue's ratios: (setting, against setting).
RATIOS = {
    "two_daemons": ("2x4", "1x4"),
    "four_daemons": ("4x4", "1x4"),
    "concurrency_8": ("1x8", "1x1"),
}


def plans_per_second(
    work: Path,
    daemons: int,
    concurrency: int,
    count: int,
    delay_ms: float,
    env: dict[str, str] | None = None,
    gcloud_pubsub: bool = False,
) -> dict[str, Any]:
    name = f"scale-{daemons}x{concurrency}-{delay_ms:g}ms"
    with stack(work, name, gcs_delay_ms=delay_ms, gcloud_pubsub=gcloud_pubsub) as st:
        settings = {"FILEOPS_CONCURRENCY": str(concurrency), "FILEOPS_LOG_LEVEL": "INFO"}
        for case in CASES:
            (st.root / case / "notes").mkdir(parents=True)
        for _ in range(daemons):
            st.start_daemon({**settings, **(env or {})})
        client = Client("fileops-results", "fileops-plans")
        try:
            _warm_up(client, f"warm-{name}")
            plans = [scale_plan(name, i) for i in range(count)]
            with cpu_of_stack(st.daemons) as cpu:
                out = client.burst(plans, timeout=900)
            out.update(cpu)
            _check_applied(client, plans, name)
            names = {str(proc.pid): f"daemon-{n}" for n, proc in enumerate(st.daemons, 1)}
            by_worker: Counter[str] = Counter()
            for plan in plans:
                worker = client.receiver.worker.get(plan["plan_id"], "")
                by_worker[names.get(worker, worker or "unknown")] += 1
            out["plans_by_worker"] = dict(by_worker)
            out["waits"] = _waits(st.work)
        finally:
            client.close()
    log(
        f"  {daemons} daemon(s) x {concurrency} threads at {delay_ms:g} ms: "
        f"{out['per_s']:.1f} plans/s, stack on {out['workload_cores']:.2f} cores, "
        f"by daemon {out['plans_by_worker']}, waits and nacks {out['waits']}"
    )
    return out


def _waits(work: Path) -> dict[str, int]:
    """The daemons' ``plan.waiting`` and ``plan.nacked`` lines, by reason."""
    found: Counter[str] = Counter()
    for path in work.glob("daemon-*.log"):
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if doc.get("message") in ("plan.waiting", "plan.nacked"):
                    found[f"{doc['message']}:{doc.get('reason', '?')}"] += 1
    return dict(found)


def bench_scale(
    work: Path,
    count: int,
    delay_ms: float,
    settings: tuple[tuple[int, int], ...] = SETTINGS,
    env: dict[str, str] | None = None,
    gcloud_pubsub: bool = False,
) -> dict[str, Any]:
    """``env``: more settings for every daemon (``FILEOPS_FLOW_MAX_MESSAGES``, ...);
    ``gcloud_pubsub``: Google's official emulator instead of pstest."""
    runs = {
        f"{d}x{c}": plans_per_second(work, d, c, count, delay_ms, env, gcloud_pubsub)
        for d, c in settings
    }
    rate = {key: run["per_s"] for key, run in runs.items()}
    out: dict[str, Any] = {"plans": count, "delay_ms": delay_ms, "runs": runs, "per_s": rate}
    for name, (over, under) in RATIOS.items():
        if over in rate and under in rate:
            out[name] = rate[over] / rate[under]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=100)
    parser.add_argument("--ms", type=float, default=20.0)
    parser.add_argument("--work", default="bench-results/work-scale")
    parser.add_argument("--out", default="bench-results/scale.json")
    parser.add_argument("--settings", nargs="+", default=[f"{d}x{c}" for d, c in SETTINGS])
    parser.add_argument("--env", nargs="*", default=[], help="KEY=VALUE for every daemon")
    parser.add_argument("--gcloud-pubsub", action="store_true", help="Google's emulator")
    args = parser.parse_args()
    settings = tuple((int(d), int(c)) for d, c in (setting.split("x") for setting in args.settings))
    env = dict(item.split("=", 1) for item in args.env)
    result = bench_scale(
        Path(args.work).resolve(), args.plans, args.ms, settings, env, args.gcloud_pubsub
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")
    ratios = {name: round(result[name], 2) for name in RATIOS if name in result}
    log(f"plans/s {result['per_s']}; ratios {ratios}")


if __name__ == "__main__":
    main()
