"""Prometheus metrics and a health endpoint, served on a localhost port (off by default).

``GET /metrics``: the Prometheus text format. ``GET /healthz``: 200 while the pull stream is
up and the main loop ticked recently, 503 otherwise (JSON body either way).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Metrics", "serve_metrics"]


class Metrics:
    """The daemon's instruments, in a registry of their own (no global state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.plans = Counter(
            "fileops_plans",
            "Plans answered, by status and mode",
            ["status", "dry_run"],
            registry=self.registry,
        )
        self.steps_applied = Counter(
            "fileops_steps_applied",
            "File steps applied (a folder move counts one per file)",
            registry=self.registry,
        )
        self.apply_seconds = Histogram(
            "fileops_apply_seconds",
            "Time to apply a plan (dry runs excluded)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
            registry=self.registry,
        )
        self.lease_takeovers = Counter(
            "fileops_lease_takeovers",
            "Plans taken over from a daemon that died or handed them over on shutdown",
            registry=self.registry,
        )
        self.redeliveries = Counter(
            "fileops_redeliveries",
            "Messages seen again (delivery attempt > 1 or already done)",
            registry=self.registry,
        )
        self.nacks = Counter(
            "fileops_nacks",
            "Plan messages nacked (Pub/Sub redelivers them), by reason",
            ["reason"],
            registry=self.registry,
        )
        self.waits = Counter(
            "fileops_plan_waits",
            "Times a plan message was held back for an earlier plan of its case, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.waiting = Gauge(
            "fileops_plans_waiting",
            "Plan messages held, not yet settled, until their case is free",
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "fileops_plans_in_flight",
            "Plan messages being handled now",
            registry=self.registry,
        )
        self.last_tick = Gauge(
            "fileops_main_loop_last_tick_seconds",
            "Unix time of the main loop's last tick",
            registry=self.registry,
        )
        self.last_tick_time = 0.0

    def tick(self) -> None:
        self.last_tick_time = time.time()
        self.last_tick.set(self.last_tick_time)

    def loop_is_fresh(self, max_age: float) -> bool:
        return time.time() - self.last_tick_time < max_age


#: Connections served at once; more are closed at once (a scraper needs one).
MAX_CONNECTIONS = 8
#: Seconds a connection may sit idle (or trickle a request) before it is closed.
IDLE_TIMEOUT = 5.0


class _Handler(BaseHTTPRequestHandler):
    metrics: Metrics
    healthy: Callable[[], bool]
    timeout = IDLE_TIMEOUT  # socket timeout: an idle connection does not hold a thread forever

    def do_GET(self) -> None:
        if self.path == "/metrics":
            body, status, kind = generate_latest(self.metrics.registry), 200, CONTENT_TYPE_LATEST
        elif self.path == "/healthz":
            ok = self.healthy()
            body = json.dumps({"ok": ok}).encode()
            status, kind = (200 if ok else 503), "application/json"
        else:
            body, status, kind = b"not found\n", 404, "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return  # scrapes every few seconds would drown the logs


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, but at most ``MAX_CONNECTIONS`` of them."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # busy: refuse instead of growing without bound
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve_metrics(
    metrics: Metrics,
    port: int,
    healthy: Callable[[], bool],
    host: str = "127.0.0.1",
    *,
    idle_timeout: float = IDLE_TIMEOUT,
) -> ThreadingHTTPServer:
    """Start the endpoint in a thread; ``port`` 0 picks a free one (see server_address)."""
    handler = type(
        "MetricsHandler",
        (_Handler,),
        {"metrics": metrics, "healthy": staticmethod(healthy), "timeout": idle_timeout},
    )
    server = _BoundedServer((host, port), handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
