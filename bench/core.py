"""1. The core in-process: parse + validate + simulate a 10,000-operation plan.

Compared with the reference validator alone: ``jsonschema`` (Draft 2020-12) validating the same,
already decoded document against ``schemas/plan.schema.json``. jsonschema-rs alone is recorded too.
"""

from __future__ import annotations

import gc
import json
import time
from importlib.metadata import version
from typing import Any

from bench.common import BenchError, median
from bench.fixtures import MoveFixture


def _timeit(fn: Any, runs: int) -> list[float]:
    fn()  # warm-up: caches (compiled validators, the OS's dentry cache) as in a running daemon
    times = []
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def bench_core(fixture: MoveFixture, runs: int) -> dict[str, Any]:
    import jsonschema
    import jsonschema_rs

    from fileops_daemon.contract.limits import Limits
    from fileops_daemon.contract.plan import load_schema, parse_plan
    from fileops_daemon.core.simulate import simulate

    raw = fixture.plan_path.read_bytes()
    root = str(fixture.template)
    count = len(fixture.plan["operations"])
    limits = Limits()

    cold_started = time.perf_counter()
    plan = parse_plan(raw, limits)
    cold_parse = time.perf_counter() - cold_started
    sim = simulate(plan, root, limits)
    if not sim.ok or len(sim.steps) != count:
        raise BenchError(f"simulation of the {count}-move plan failed: {sim.errors[:3]}")

    def parse_only() -> None:
        parse_plan(raw, limits)

    def parse_and_simulate() -> None:
        simulated = simulate(parse_plan(raw, limits), root, limits)
        assert simulated.ok

    document = json.loads(raw)
    schema = load_schema("plan")
    reference = jsonschema.Draft202012Validator(schema)
    fast = jsonschema_rs.validator_for(schema)

    def reference_validate() -> None:
        reference.validate(document)

    def fast_validate() -> None:
        assert fast.is_valid(document)

    full = _timeit(parse_and_simulate, runs)
    parse_times = _timeit(parse_only, runs)
    ref = _timeit(reference_validate, max(3, runs - 2))
    rs = _timeit(fast_validate, runs)
    return {
        "operations": count,
        "plan_bytes": len(raw),
        "runs": runs,
        "parse_validate_simulate_s": full,
        "parse_validate_simulate_median_s": median(full),
        "per_operation_us": median(full) / count * 1e6,
        "parse_validate_median_s": median(parse_times),
        "simulate_median_s": median(full) - median(parse_times),
        "first_parse_cold_s": cold_parse,
        "jsonschema_validate_s": ref,
        "jsonschema_validate_median_s": median(ref),
        "jsonschema_rs_validate_median_s": median(rs),
        "jsonschema_version": version("jsonschema"),
        "jsonschema_rs_version": version("jsonschema-rs"),
    }
