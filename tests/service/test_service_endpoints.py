"""What systemd and the Ops Agent see: sd_notify messages, /healthz and /metrics."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.daemon_support import Stack, wait_until
from tests.emulators import harness
from tests.support import CASE

pytest_plugins = ["tests.conftest_daemon"]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_notify_watchdog_health_and_metrics(stack: Stack, tmp_path: Path) -> None:
    stack.bootstrap()
    stack.case(CASE, {"a.txt": "a\n"})
    notify_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    listener.settimeout(0.2)
    port = harness.free_port()
    daemon = stack.start_daemon(
        "a",
        ready=False,
        NOTIFY_SOCKET=str(notify_path),
        WATCHDOG_USEC="1000000",
        FILEOPS_METRICS_PORT=str(port),
    )
    received: list[str] = []

    def drain() -> list[str]:
        try:
            while True:
                received.extend(listener.recv(4096).decode().splitlines())
        except TimeoutError:
            return received

    try:
        wait_until(lambda: "READY=1" in drain(), 30, "READY=1 from the daemon")
        wait_until(lambda: drain().count("WATCHDOG=1") >= 3, 10, "watchdog pings")
        status, body = get(f"http://127.0.0.1:{port}/healthz")
        assert (status, json.loads(body)) == (200, {"ok": True})
        stack.publish(
            {
                "plan_id": "m-1",
                "case_name": CASE,
                "dry_run": False,
                "operations": [{"type": "mkdir", "path": f"{CASE}/x"}],
            }
        )
        stack.results.wait_plan("m-1", 30)
        status, metrics = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert 'fileops_plans_total{dry_run="false",status="applied"} 1.0' in metrics
        assert "fileops_steps_applied_total 1.0" in metrics
        assert "fileops_apply_seconds_count 1.0" in metrics
        assert get(f"http://127.0.0.1:{port}/nope")[0] == 404
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit(30) == 0
        drain()
        assert "STOPPING=1" in received
        assert received.index("READY=1") < received.index("STOPPING=1")
    finally:
        listener.close()


def test_metrics_are_off_unless_asked_for(stack: Stack) -> None:
    stack.bootstrap()
    stack.case(CASE)
    daemon = stack.start_daemon("a")
    time.sleep(1)
    assert not daemon.events("daemon.metrics")
