"""The metrics endpoint cannot be held open: idle connections time out, threads stay bounded."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

from fileops_daemon.service.metrics import MAX_CONNECTIONS, Metrics, serve_metrics


def test_200_idle_connections_hold_neither_threads_nor_the_endpoint() -> None:
    server = serve_metrics(Metrics(), 0, lambda: True, idle_timeout=1.0)
    host, port = server.server_address[:2]
    baseline = threading.active_count()
    idle: list[socket.socket] = []
    try:
        for _ in range(200):
            idle.append(socket.create_connection((str(host), port), timeout=5))
        time.sleep(0.5)
        assert threading.active_count() <= baseline + MAX_CONNECTIONS + 1
        # Every idle connection is closed by the server (refused at once, or after the timeout).
        deadline = time.monotonic() + 10
        for sock in idle:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            assert sock.recv(1) == b"", "an idle connection was kept open"
        time.sleep(0.2)
        assert threading.active_count() <= baseline + 1
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5) as response:
            assert response.status == 200
    finally:
        for sock in idle:
            sock.close()
        server.shutdown()
        server.server_close()
