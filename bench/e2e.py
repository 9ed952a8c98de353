"""4. End to end through the emulators (5., the daemon's memory, is bench/memory.py).

Each stack is fresh: pstest + fake-gcs-server (in memory) from the test harness, the buckets,
``python -m fileops_daemon.cli bootstrap``, then daemons ``python -m fileops_daemon.cli run``
with the environment of scripts/run_stack.py (``FILEOPS_LOG_LEVEL=WARNING``, each its own
``FILEOPS_STATE_DIR`` and ``FILEOPS_WORKER_ID``, all on the one plans subscription). A daemon is
ready when its ``/healthz`` answers (``FILEOPS_METRICS_PORT``), then 10 dry runs warm it up.

The publisher is FileopsClient's (message ordering, ordering key = case, the plan's attributes
and a ``client_id`` the daemon copies onto the result, default batching); results come back on
a subscription filtered on that ``client_id``, through a streaming pull whose callback stamps
the arrival. The bare round trip uses the same publisher and receiver through a responder
process (bench/responder.py) that republishes each message at once.

- stack A: bare latency (closed loop: one message in flight) and bare throughput (all published
  at once); a daemon: fileops latency (closed loop)
- stack B: 1 daemon, throughput (all plans published at once)
- stack C: 2 daemons on the same subscription, throughput

fake-gcs-server's memory backend gets slower with every object a bucket holds (each plan leaves
a ledger record and an audit record), so each throughput figure starts from an empty stack.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    INTERRUPTED,
    PYTHON,
    REPO,
    BenchError,
    CpuMeter,
    children_by_name,
    clean_env,
    log,
    median,
    percentile,
    process_cpu_seconds,
    spawn,
    stop,
    timed,
)
from tests.emulators import harness
from tests.emulators.latency_proxy import LatencyProxy, latency_proxy

PROJECT = "fileops-bench"
CASES = [f"E2E-Case-{i:02d}" for i in range(10)]
BARE_TOPIC = "bench-bare-requests"
BARE_SUBSCRIPTION = "bench-bare-responder"
BARE_REPLIES = "bench-bare-replies"
RESULT_TIMEOUT = 60.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --------------------------------------------------------------------------- plans


def one_op_plan(tag: str, i: int, *, dry_run: bool = False) -> dict[str, Any]:
    case = CASES[i % len(CASES)]
    if i % 2 == 0:
        operation = {
            "type": "write",
            "path": f"{case}/notes/{tag}-{i:04d}.txt",
            "content": f"note {i} written by the benchmark\n",
        }
    else:
        operation = {"type": "mkdir", "path": f"{case}/folders/{tag}-{i:04d}"}
    return {
        "plan_id": f"{tag}-{i:04d}",
        "case_name": case,
        "dry_run": dry_run,
        "requested_by": "bench",
        "reason": "benchmark",
        "operations": [operation],
    }


# --------------------------------------------------------------------------- client side


class Receiver:
    """A streaming pull on a results subscription; stamps when each plan_id's answer arrives."""

    def __init__(self, subscriber: Any, subscription: str) -> None:
        from google.cloud import pubsub_v1

        self.arrived: dict[str, float] = {}
        self.status: dict[str, str] = {}
        self.worker: dict[str, str] = {}
        self._cond = threading.Condition()
        self._future = subscriber.subscribe(
            subscription,
            callback=self._on_message,
            flow_control=pubsub_v1.types.FlowControl(max_messages=1000),
        )

    def _on_message(self, message: Any) -> None:
        stamp = time.perf_counter()
        message.ack()
        plan_id = message.attributes.get("plan_id", "")
        status = message.attributes.get("status", "")
        worker = ""
        if status != "echo":
            with contextlib.suppress(ValueError, AttributeError):
                found = json.loads(message.data).get("worker", "")
                worker = str(found.get("pid", found) if isinstance(found, dict) else found)
        with self._cond:
            self.arrived.setdefault(plan_id, stamp)
            self.status.setdefault(plan_id, status)
            self.worker.setdefault(plan_id, worker)
            self._cond.notify_all()

    def wait(self, plan_ids: list[str], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: all(p in self.arrived for p in plan_ids), timeout=timeout
            )

    def close(self) -> None:
        self._future.cancel()
        with contextlib.suppress(Exception):
            self._future.result(timeout=2 if INTERRUPTED.is_set() else 10)


class Client:
    """FileopsClient's publishing, plus a Receiver on a filtered results subscription."""

    def __init__(self, results_topic: str, plans_topic: str) -> None:
        from google.cloud import pubsub_v1

        from fileops_daemon.contract.attributes import CLIENT_ID as REPLY_ATTRIBUTE

        self.client_id = f"bench{uuid.uuid4().hex[:12]}"
        self.reply_attribute = REPLY_ATTRIBUTE
        self.topic = f"projects/{PROJECT}/topics/{plans_topic}"
        self.publisher = pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        )
        self.subscriber = pubsub_v1.SubscriberClient()
        self.subscription = f"projects/{PROJECT}/subscriptions/{results_topic}-{self.client_id}"
        self.subscriber.create_subscription(
            request={
                "name": self.subscription,
                "topic": f"projects/{PROJECT}/topics/{results_topic}",
                "filter": f'attributes.{REPLY_ATTRIBUTE} = "{self.client_id}"',
                "ack_deadline_seconds": 10,
            }
        )
        self.receiver = Receiver(self.subscriber, self.subscription)
        self.published: dict[str, float] = {}
        self.futures: dict[str, Any] = {}

    def publish(self, plan: dict[str, Any]) -> None:
        data = json.dumps(plan, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        attributes = {
            "plan_id": plan["plan_id"],
            "case_name": plan["case_name"],
            "dry_run": "false" if plan.get("dry_run") is False else "true",
            self.reply_attribute: self.client_id,
        }
        self.published[plan["plan_id"]] = time.perf_counter()
        self.futures[plan["plan_id"]] = self.publisher.publish(
            self.topic, data, ordering_key=plan["case_name"], **attributes
        )

    def _missing(self, plan_ids: list[str]) -> BenchError:
        missing = [p for p in plan_ids if p not in self.receiver.arrived]
        errors = []
        for plan_id in missing[:3]:
            future = self.futures.get(plan_id)
            if future is not None and future.done() and future.exception() is not None:
                errors.append(f"{plan_id}: publish failed: {future.exception()}")
        return BenchError(
            f"no answer for {len(missing)} of {len(plan_ids)} messages "
            f"(e.g. {missing[:3]}) {'; '.join(errors)}"
        )

    def round_trip(self, plan: dict[str, Any], timeout: float = RESULT_TIMEOUT) -> float:
        self.publish(plan)
        if not self.receiver.wait([plan["plan_id"]], timeout):
            raise self._missing([plan["plan_id"]])
        return self.receiver.arrived[plan["plan_id"]] - self.published[plan["plan_id"]]

    def burst(self, plans: list[dict[str, Any]], timeout: float) -> dict[str, Any]:
        ids = [p["plan_id"] for p in plans]
        started = time.perf_counter()
        for plan in plans:
            self.publish(plan)
        if not self.receiver.wait(ids, timeout):
            raise self._missing(ids)
        last = max(self.receiver.arrived[p] for p in ids)
        latencies = [self.receiver.arrived[p] - self.published[p] for p in ids]
        return {
            "count": len(ids),
            "seconds": last - started,
            "per_s": len(ids) / (last - started),
            "latency_p50_ms": percentile(latencies, 50) * 1000,
            "latency_p99_ms": percentile(latencies, 99) * 1000,
        }

    def statuses(self, plan_ids: list[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for plan_id in plan_ids:
            status = self.receiver.status.get(plan_id, "missing")
            counts[status] = counts.get(status, 0) + 1
        return counts

    def close(self) -> None:
        """Stop receiving; the subscription goes with the stack's emulator (no RPC here)."""
        self.receiver.close()
        with contextlib.suppress(Exception):
            self.subscriber.close()
        if not INTERRUPTED.is_set():  # after Ctrl-C pstest is gone: nothing left to flush
            self.publisher.stop()


def closed_loop(client: Client, plans: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [client.round_trip(plan) for plan in plans]
    return {
        "count": len(latencies),
        "latency_p50_ms": percentile(latencies, 50) * 1000,
        "latency_p99_ms": percentile(latencies, 99) * 1000,
        "latency_mean_ms": sum(latencies) / len(latencies) * 1000,
        "first_half_p50_ms": percentile(latencies[: len(latencies) // 2], 50) * 1000,
        "second_half_p50_ms": percentile(latencies[len(latencies) // 2 :], 50) * 1000,
    }


# --------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    work: Path
    pubsub_host: str
    gcs_endpoint: str
    root: Path
    daemons: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started_at: dict[int, float] = field(default_factory=dict)
    proxy: LatencyProxy | None = None  # between everything and fake-gcs-server, if any

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return clean_env(
            {
                "PUBSUB_EMULATOR_HOST": self.pubsub_host,
                "STORAGE_EMULATOR_HOST": self.gcs_endpoint,
                "FILEOPS_PROJECT": PROJECT,
                "FILEOPS_STATE_BUCKET": "fileops-state",
                "FILEOPS_AUDIT_BUCKET": "fileops-audit",
                "FILEOPS_PROJECTS_ROOT": str(self.root),
                "FILEOPS_STATE_DIR": str(self.work / "state-0"),
                "FILEOPS_LOG_FORMAT": "json",
                "FILEOPS_LOG_LEVEL": "WARNING",
                **(extra or {}),
            }
        )

    def start_daemon(self, extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        n = len(self.daemons) + 1
        port = harness.free_port()
        env = self.env(
            {
                "FILEOPS_STATE_DIR": str(self.work / f"state-{n}"),
                "FILEOPS_WORKER_ID": f"bench-daemon-{n}",
                "FILEOPS_METRICS_PORT": str(port),
                **(extra or {}),
            }
        )
        log_path = self.work / f"daemon-{n}.log"
        with log_path.open("ab") as log_fh:
            proc = spawn(
                [PYTHON, "-m", "fileops_daemon.cli", "run"],
                env=env,
                cwd=REPO,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
            )
        self.started_at[proc.pid] = time.perf_counter()
        self.daemons.append(proc)
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise BenchError(f"daemon {n} exited with {proc.returncode}: {tail}")
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                _OPENER.open(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp,
            ):
                if resp.status == 200:
                    return proc
            if time.monotonic() > deadline:
                raise BenchError(f"daemon {n} not healthy within 60 s (log: {log_path})")
            time.sleep(0.1)

    def stop_daemons(self, grace: float = 30.0) -> list[int]:
        codes = [stop(proc, timeout=grace) for proc in self.daemons]
        self.daemons.clear()
        return codes


@contextlib.contextmanager
def stack(
    work: Path, name: str, gcs_delay_ms: float | None = None, *, gcloud_pubsub: bool = False
) -> Iterator[Stack]:
    """Fresh emulators, buckets, bootstrap, 10 case folders; everything stopped on exit.

    ``gcs_delay_ms``: everything reaches fake-gcs-server through the counting latency proxy
    (``Stack.proxy``), which adds that delay to every request. ``gcloud_pubsub``: Google's
    official Pub/Sub emulator instead of pstest."""
    base = work / name
    shutil.rmtree(base, ignore_errors=True)
    root = base / "projects"
    for case in CASES:
        (root / case / "notes").mkdir(parents=True)
    saved = {k: os.environ.get(k) for k in ("PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST")}
    with (
        (
            harness.gcloud_pubsub_emulator(log_path=base / "pubsub.log")
            if gcloud_pubsub
            else harness.pubsub_emulator(log_path=base / "pstest.log")
        ) as pubsub_host,
        harness.gcs_emulator(log_path=base / "fake-gcs.log") as emulator_endpoint,
        contextlib.ExitStack() as proxied,
    ):
        proxy: LatencyProxy | None = None
        gcs_endpoint = emulator_endpoint
        if gcs_delay_ms is not None:
            proxy = proxied.enter_context(latency_proxy(emulator_endpoint, gcs_delay_ms))
            gcs_endpoint = proxy.endpoint
        os.environ["PUBSUB_EMULATOR_HOST"] = pubsub_host  # for this process's clients
        os.environ["STORAGE_EMULATOR_HOST"] = gcs_endpoint
        the_stack = Stack(base, pubsub_host, gcs_endpoint, root, proxy=proxy)
        try:
            for bucket in ("fileops-state", "fileops-audit"):
                harness.create_bucket(gcs_endpoint, bucket)
            timed(
                [PYTHON, "-m", "fileops_daemon.cli", "bootstrap"],
                env=the_stack.env(),
                cwd=REPO,
                timeout=120,
            )
            yield the_stack
        finally:
            # SIGTERM lets in-flight plans finish; after Ctrl-C the emulators are gone
            # and the journals make a quick SIGKILL safe.
            the_stack.stop_daemons(5.0 if INTERRUPTED.is_set() else 30.0)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@contextlib.contextmanager
def bare_client(st: Stack) -> Iterator[Client]:
    """A Client whose messages a responder process (bench/responder.py) republishes at once:
    the bare Pub/Sub round trip, warmed up with 10 messages."""
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    publisher.create_topic(name=f"projects/{PROJECT}/topics/{BARE_TOPIC}")
    publisher.create_topic(name=f"projects/{PROJECT}/topics/{BARE_REPLIES}")
    subscriber.create_subscription(
        request={
            "name": f"projects/{PROJECT}/subscriptions/{BARE_SUBSCRIPTION}",
            "topic": f"projects/{PROJECT}/topics/{BARE_TOPIC}",
            "enable_message_ordering": True,
            "ack_deadline_seconds": 60,
        }
    )
    subscriber.close()
    publisher.stop()
    responder = spawn(
        [PYTHON, "-m", "bench.responder", PROJECT, BARE_SUBSCRIPTION, BARE_REPLIES],
        env=st.env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=(st.work / "responder.log").open("ab"),
    )
    try:
        assert responder.stdout is not None
        line = responder.stdout.readline().decode().strip()  # "ready" (or EOF: it died)
        if line != "ready":
            raise BenchError(f"responder did not start (exit {responder.poll()})")
        client = Client(BARE_REPLIES, BARE_TOPIC)
        try:
            for i in range(10):
                client.round_trip(one_op_plan("bare-warm", i))
            yield client
        finally:
            client.close()
    finally:
        stop(responder, timeout=15)


def _warm_up(client: Client, tag: str) -> None:
    plans = [one_op_plan(tag, i, dry_run=True) for i in range(len(CASES))]
    client.burst(plans, timeout=RESULT_TIMEOUT)
    counts = client.statuses([p["plan_id"] for p in plans])
    if counts.get("planned") != len(plans):
        raise BenchError(f"warm-up dry runs: results were {counts}, expected all planned")


def _check_applied(client: Client, plans: list[dict[str, Any]], what: str) -> None:
    counts = client.statuses([p["plan_id"] for p in plans])
    if counts.get("applied", 0) != len(plans):
        raise BenchError(f"{what}: results were {counts}, expected {len(plans)} applied")


@contextlib.contextmanager
def cpu_of_stack(daemons: list[subprocess.Popen[bytes]]) -> Iterator[dict[str, Any]]:
    """CPU seconds spent by the daemons, pstest, fake-gcs and this process over a block."""
    kids = children_by_name()
    pids = {
        **{f"daemon-{n}": [d.pid] for n, d in enumerate(daemons, 1)},
        "pstest": kids.get("pstest-server", []),
        "fake_gcs": kids.get("fake-gcs-server", []),
        "bench_client": [os.getpid()],
    }
    before = {k: sum(process_cpu_seconds(p) for p in v) for k, v in pids.items()}
    out: dict[str, Any] = {}
    started = time.perf_counter()
    with CpuMeter() as meter:
        yield out
    wall = time.perf_counter() - started
    used = {k: sum(process_cpu_seconds(p) for p in v) - before[k] for k, v in pids.items()}
    out["cpu_s"] = used
    out["machine_cpu_busy"] = meter.busy
    out["workload_cores"] = sum(used.values()) / wall if wall > 0 else 0.0


# --------------------------------------------------------------------------- the runs


def _stack_a(work: Path, count: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with stack(work, "stack-a") as st:
        with bare_client(st) as client:
            log(f"  bare round trip: closed loop of {count}")
            out["bare_latency"] = closed_loop(
                client, [one_op_plan("bare-lat", i) for i in range(count)]
            )
            log(f"  bare round trip: burst of {count}")
            with cpu_of_stack([]) as cpu:
                out["bare_throughput"] = client.burst(
                    [one_op_plan("bare-tput", i) for i in range(count)], timeout=300
                )
            out["bare_throughput"].update(cpu)

        # -- one daemon: latency
        st.start_daemon()
        client = Client("fileops-results", "fileops-plans")
        try:
            _warm_up(client, "warm-a")
            plans = [one_op_plan("lat", i) for i in range(count)]
            log(f"  fileops, 1 daemon: closed loop of {count}")
            out["fileops_latency"] = closed_loop(client, plans)
            _check_applied(client, plans, "fileops latency run")
        finally:
            client.close()
    return out


def _throughput(work: Path, name: str, daemons: int, count: int) -> dict[str, Any]:
    with stack(work, name) as st:
        for _ in range(daemons):
            st.start_daemon()
        client = Client("fileops-results", "fileops-plans")
        try:
            _warm_up(client, f"warm-{name}")
            plans = [one_op_plan(f"tput{daemons}", i) for i in range(count)]
            log(f"  fileops, {daemons} daemon(s): burst of {count}")
            with cpu_of_stack(st.daemons) as cpu:
                out = client.burst(plans, timeout=600)
            out.update(cpu)
            _check_applied(client, plans, f"{daemons}-daemon throughput run")
            names = {str(proc.pid): f"daemon-{n}" for n, proc in enumerate(st.daemons, 1)}
            by_worker: dict[str, int] = {}
            for plan in plans:
                worker = client.receiver.worker.get(plan["plan_id"], "")
                worker = names.get(worker, worker or "unknown")
                by_worker[worker] = by_worker.get(worker, 0) + 1
            out["plans_by_worker"] = by_worker
        finally:
            client.close()
    return out


def bench_e2e(work: Path, count: int, rounds: int) -> dict[str, Any]:
    out = _stack_a(work, count)
    one: list[dict[str, Any]] = []
    two: list[dict[str, Any]] = []
    for r in range(rounds):
        one.append(_throughput(work, f"stack-b{r}", 1, count))
        log(f"  1 daemon: {one[-1]['per_s']:.1f} plans/s")
        two.append(_throughput(work, f"stack-c{r}", 2, count))
        log(f"  2 daemons: {two[-1]['per_s']:.1f} plans/s, by worker {two[-1]['plans_by_worker']}")
    out["throughput_1"] = one
    out["throughput_2"] = two
    out["throughput_1_per_s"] = median([x["per_s"] for x in one])
    out["throughput_2_per_s"] = median([x["per_s"] for x in two])
    out["scaling"] = out["throughput_2_per_s"] / out["throughput_1_per_s"]
    out["latency_ratio"] = (
        out["fileops_latency"]["latency_p50_ms"] / out["bare_latency"]["latency_p50_ms"]
    )
    out["count"] = count
    return out
