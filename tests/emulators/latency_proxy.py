"""An HTTP proxy in front of fake-gcs-server that adds a fixed delay to every request and
counts them: real GCS costs tens of milliseconds a request, loopback costs microseconds.

Requests are forwarded one for one (HTTP/1.1, keep-alive on both sides), so the count is
what the client really sent. Each request is delayed before it is forwarded, like the round
trip to a distant server; concurrent requests are delayed concurrently.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["LatencyProxy", "latency_proxy"]

#: Headers about one connection, not the message: never forwarded.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class LatencyProxy:
    """Counts of the requests seen, by kind (``GET object``, ``POST rewrite``, ...)."""

    def __init__(self, upstream: str, delay_s: float) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        self.delay_s = delay_s
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.endpoint = ""

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def count(self, method: str, path: str) -> None:
        with self._lock:
            self.counts[f"{method} {request_kind(path)}"] += 1


def request_kind(path: str) -> str:
    """A coarse name for a JSON API path, enough to see what a client spends its requests on."""
    route = urllib.parse.urlsplit(path).path
    if "/rewriteTo/" in route:
        return "rewrite"
    if "/copyTo/" in route:
        return "copy"
    if "/moveTo/" in route:
        return "move"
    if route.startswith("/upload/"):
        return "upload"
    if route.startswith("/download/") or "alt=media" in path:
        return "download"
    if "/o/" in route:
        return "object"
    if route.endswith("/o"):
        return "list"
    return "other"


def _handler_class(proxy: LatencyProxy) -> type[BaseHTTPRequestHandler]:
    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: the counts are the record

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _forward(self) -> None:
            body = self._body()
            proxy.count(self.command, self.path)
            if proxy.delay_s:
                time.sleep(proxy.delay_s)
            connection = _connection(proxy)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            if body or self.command in ("POST", "PUT", "PATCH"):
                headers["Content-Length"] = str(len(body))
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException):
                _drop_connection()
                self.send_error(502, "upstream failed")
                return
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def do_GET(self) -> None:
            self._forward()

        def do_POST(self) -> None:
            self._forward()

        def do_PUT(self) -> None:
            self._forward()

        def do_PATCH(self) -> None:
            self._forward()

        def do_DELETE(self) -> None:
            self._forward()

        def do_HEAD(self) -> None:
            self._forward()

    return Forward


_local = threading.local()


def _connection(proxy: LatencyProxy) -> http.client.HTTPConnection:
    """One upstream connection per proxy thread (a client connection is one thread)."""
    connection: http.client.HTTPConnection | None = getattr(_local, "connection", None)
    if connection is None:
        connection = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, 60)
        _local.connection = connection
    return connection


def _drop_connection() -> None:
    connection = getattr(_local, "connection", None)
    if connection is not None:
        connection.close()
        _local.connection = None


@contextlib.contextmanager
def latency_proxy(upstream: str, delay_ms: float) -> Iterator[LatencyProxy]:
    """Serve a counting proxy to ``upstream`` on a free loopback port until the block ends."""
    proxy = LatencyProxy(upstream, delay_ms / 1000)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(proxy))
    server.daemon_threads = True
    proxy.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="latency-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
