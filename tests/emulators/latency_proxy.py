"""An HTTP proxy in front of fake-gcs-server that adds a fixed delay to every request and
counts them: real GCS costs tens of milliseconds a request, loopback costs microseconds.

Requests are forwarded one for one (HTTP/1.1, keep-alive on both sides), so the count is
what the client really sent. Each request is delayed before it is forwarded, like the round
trip to a distant server; concurrent requests are delayed concurrently.

For the GCS-API executor's tests it can also stand in for what fake-gcs-server lacks:
``enforce_preconditions`` answers 412 as GCS does when a copy, rewrite, delete or download
names a generation that is not the object's (fake-gcs-server honours preconditions on uploads
only; ``tests/gcs/test_emulator_preconditions.py`` pins which), ``serve_move`` answers
``objects.move`` (which fake-gcs-server lacks) as GCS documents it: atomic against every other
proxied request, ``ifSourceGenerationMatch`` and ``ifGenerationMatch`` honoured, the
destination's resource with its new generation in the answer. ``before_forward`` lets a test
act at an exact request (a racing writer), and ``answer`` makes it reply with an error status
instead (an outage), or cut the connection (``RESET``). ``log`` keeps every request's method
and path; ``requests()`` every forwarded one with when it arrived and was answered (and an
upload's object name).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import struct
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["RESET", "LatencyProxy", "Request", "latency_proxy"]

#: What ``answer`` returns to cut the client's connection without a reply (a reset).
RESET = 0

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


@dataclass(frozen=True)
class Request:
    """One forwarded request: when it arrived and when its answer left (``time.time()``, so
    comparable with another process's wall-clock stamps, such as a Pub/Sub publish time)."""

    method: str
    path: str
    started: float
    ended: float
    #: The object an upload names in its metadata part ("" for other requests).
    name: str = ""

    @property
    def kind(self) -> str:
        return f"{self.method} {request_kind(self.path)}"

    @property
    def is_write(self) -> bool:
        """An upload, copy, rewrite, move, patch or delete: what changes the bucket."""
        return self.method not in ("GET", "HEAD")


class LatencyProxy:
    """Counts of the requests seen, by kind (``GET object``, ``POST rewrite``, ...)."""

    def __init__(self, upstream: str, delay_s: float) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        self.upstream_url = f"{parsed.scheme}://{parsed.netloc}".encode()
        self.delay_s = delay_s
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.endpoint = ""
        self.log: list[tuple[str, str]] = []
        #: Each request forwarded upstream, with its timing (see ``requests``).
        self.timeline: list[Request] = []
        self.enforce_preconditions = False
        #: Answer ``objects.move`` as GCS does (fake-gcs-server has no such route).
        self.serve_move = False
        #: Moves hold it apart from every other forwarded request: a move is atomic.
        self.move_lock = _TurnLock()
        #: Called with (method, path) before a request is forwarded.
        self.before_forward: Callable[[str, str], None] | None = None
        #: Called with (method, path); a status code makes the proxy answer that instead.
        self.answer: Callable[[str, str], int | None] | None = None
        # Check and forward of a request with a precondition happen under one lock, so no
        # other proxied request slips between them.
        self.precondition_lock = threading.Lock()

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.timeline.clear()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def requests(self) -> list[Request]:
        """Every request forwarded since the last reset, by arrival."""
        with self._lock:
            return sorted(self.timeline, key=lambda r: r.started)

    def record(self, request: Request) -> None:
        with self._lock:
            self.timeline.append(request)

    def count(self, method: str, path: str) -> None:
        with self._lock:
            self.counts[f"{method} {request_kind(path)}"] += 1
            self.log.append((method, path))

    def upstream(self, method: str, path: str) -> tuple[int, bytes]:
        """One request of the proxy's own to the emulator (not counted, not delayed)."""
        connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=30)
        try:
            headers = {"Content-Length": "0"} if method == "POST" else {}
            connection.request(method, path, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def generation(self, bucket: str, name: str) -> int | None:
        """The object's current generation upstream (not counted), None if there is none."""
        status, body = self.upstream("GET", f"/storage/v1/b/{bucket}/o/{name}")
        if status == 404:
            return None
        return int(json.loads(body)["generation"])

    def move(self, path: str) -> tuple[int, bytes]:
        """``objects.move`` as GCS answers it (call under ``move_lock``): 404 without
        the source, 412 when a generation precondition does not hold, else the source's
        bytes under the new name (a new generation) and the source gone, in one step for
        every other proxied request."""
        parts = urllib.parse.urlsplit(path)
        route = _MOVE_ROUTE.match(parts.path)
        assert route is not None
        query = urllib.parse.parse_qs(parts.query)
        bucket, source, target = route["b"], route["so"], route["to"]
        current = self.generation(bucket, source)
        if current is None:
            return 404, _error(404, "No such object")
        wanted = query.get("ifSourceGenerationMatch")
        if wanted is not None and int(wanted[0]) != current:
            return 412, _error(412, "Precondition Failed")
        wanted = query.get("ifGenerationMatch")
        if wanted is not None and (self.generation(bucket, target) or 0) != int(wanted[0]):
            return 412, _error(412, "Precondition Failed")
        copy = f"/storage/v1/b/{bucket}/o/{source}/rewriteTo/b/{bucket}/o/{target}"
        status, body = self.upstream("POST", copy)
        if status != 200:
            return status, body
        resource = json.loads(body)["resource"]
        status, body = self.upstream("DELETE", f"/storage/v1/b/{bucket}/o/{source}")
        if status not in (200, 204):
            return status, body
        return 200, json.dumps(resource).encode()

    def precondition_fails(self, method: str, path: str) -> bool:
        """What GCS would say: True when a generation the request names is not the object's."""
        parts = urllib.parse.urlsplit(path)
        query = urllib.parse.parse_qs(parts.query)
        checks: list[tuple[str, str, int]] = []
        copy = _COPY_ROUTE.match(parts.path)
        if copy is not None:
            if "ifSourceGenerationMatch" in query:
                wanted = int(query["ifSourceGenerationMatch"][0])
                checks.append((copy["sb"], copy["so"], wanted))
            if "ifGenerationMatch" in query:
                checks.append((copy["tb"], copy["to"], int(query["ifGenerationMatch"][0])))
        else:
            single = _OBJECT_ROUTE.match(parts.path)
            if single is not None and "ifGenerationMatch" in query and method in ("GET", "DELETE"):
                checks.append((single["b"], single["o"], int(query["ifGenerationMatch"][0])))
        for bucket, name, wanted in checks:
            current = self.generation(bucket, name)
            if current is not None and current != wanted:
                return True  # wanted 0: "only if absent"; else "only that generation"
        return False


class _TurnLock:
    """Taken by requests of one kind at a time: many moves at once (each also holding its
    two names), or many other requests at once, never both. A kind that waits gets its turn
    once the running requests end (the running kind lets no new request in meanwhile)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._kind: str | None = None
        self._holding = 0
        self._waiting: Counter[str] = Counter()
        self._names: dict[str, threading.Lock] = {}

    def _may_enter(self, kind: str) -> bool:
        if self._kind is None:
            return True
        others_wait = any(n for k, n in self._waiting.items() if k != kind)
        return self._kind == kind and not others_wait

    @contextlib.contextmanager
    def hold(self, kind: str, names: tuple[str, ...] = ()) -> Iterator[None]:
        with self._cond:
            self._waiting[kind] += 1
            self._cond.wait_for(lambda: self._may_enter(kind))
            self._waiting[kind] -= 1
            self._kind = kind
            self._holding += 1
            locks = [self._names.setdefault(name, threading.Lock()) for name in sorted(names)]
        try:
            with contextlib.ExitStack() as stack:
                for lock in locks:
                    stack.enter_context(lock)
                yield
        finally:
            with self._cond:
                self._holding -= 1
                if not self._holding:
                    self._kind = None
                self._cond.notify_all()


def _error(code: int, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


_MOVE_ROUTE = re.compile(r"^/storage/v1/b/(?P<b>[^/]+)/o/(?P<so>[^/]+)/moveTo/o/(?P<to>[^/]+)$")
_COPY_ROUTE = re.compile(
    r"^/storage/v1/b/(?P<sb>[^/]+)/o/(?P<so>[^/]+)/(?:rewriteTo|copyTo)/b/(?P<tb>[^/]+)/o/(?P<to>[^/]+)$"
)
_OBJECT_ROUTE = re.compile(r"^(?:/download)?/storage/v1/b/(?P<b>[^/]+)/o/(?P<o>[^/]+)$")


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
        # Headers and body go out as separate small writes: with Nagle's algorithm on, the
        # body waits for the client's delayed ACK, adding ~40 ms to every request.
        disable_nagle_algorithm = True

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
            self.arrived = time.time()
            proxy.count(self.command, self.path)
            if proxy.delay_s:
                time.sleep(proxy.delay_s)
            if proxy.before_forward is not None:
                proxy.before_forward(self.command, self.path)
            status = proxy.answer(self.command, self.path) if proxy.answer else None
            if status == RESET:
                self._reset()
                return
            if status is not None:
                self.send_error(status, "answered by the test proxy")
                return
            route = _MOVE_ROUTE.match(urllib.parse.urlsplit(self.path).path)
            if proxy.serve_move and route is not None and self.command == "POST":
                names = (route["so"], route["to"])
                with proxy.move_lock.hold("move", names):
                    code, payload = proxy.move(self.path)
                proxy.record(Request(self.command, self.path, self.arrived, time.time()))
                self._reply(code, payload.replace(proxy.upstream_url, proxy.endpoint.encode()))
                return
            with proxy.move_lock.hold("other"):
                if proxy.enforce_preconditions and "Generation" in self.path:
                    with proxy.precondition_lock:
                        if proxy.precondition_fails(self.command, self.path):
                            self._reply(412, _error(412, "Precondition Failed"))
                            return
                        self._send_upstream(body)
                    return
                self._send_upstream(body)

        def _reply(self, code: int, data: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _reset(self) -> None:
            """Close the connection with an RST, as a dropped connection looks to a client."""
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def _send_upstream(self, body: bytes) -> None:
            connection = _connection(proxy)
            headers = {
                k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP | {"host"}
            }
            # fake-gcs-server serves XML-style reads (GET /BUCKET/OBJECT) only for its own
            # public host: name it, not the proxy.
            headers["Host"] = f"{proxy.upstream_host}:{proxy.upstream_port}"
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
            name = _upload_name(self.path, body)
            proxy.record(Request(self.command, self.path, self.arrived, time.time(), name))
            # Links the emulator hands out (an object's mediaLink, which the Python client
            # downloads from) lead back through the proxy, so downloads are delayed and
            # counted too.
            payload = payload.replace(proxy.upstream_url, proxy.endpoint.encode())
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            try:
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (a cancelled read): not ours

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


_NAME_IN_METADATA = re.compile(rb'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _upload_name(path: str, body: bytes) -> str:
    """The object an upload writes: in the query (media uploads) or its JSON metadata part."""
    if not urllib.parse.urlsplit(path).path.startswith("/upload/"):
        return ""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    if "name" in query:
        return query["name"][0]
    found = _NAME_IN_METADATA.search(body[:4096])
    return str(json.loads(b'"' + found.group(1) + b'"')) if found else ""


_local = threading.local()


class _NoDelayConnection(http.client.HTTPConnection):
    """An upstream connection that sends each request at once (no Nagle wait)."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _connection(proxy: LatencyProxy) -> http.client.HTTPConnection:
    """One upstream connection per proxy thread (a client connection is one thread)."""
    connection: http.client.HTTPConnection | None = getattr(_local, "connection", None)
    if connection is None:
        connection = _NoDelayConnection(proxy.upstream_host, proxy.upstream_port, 60)
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
