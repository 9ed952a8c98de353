"""``fileops mcp --http`` refuses a foreign ``Host`` or ``Origin`` (DNS rebinding) on every
loopback address it accepts, not only on the three spellings the MCP SDK protects by itself;
and it says where it serves. No Pub/Sub is needed: ``initialize`` never publishes."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fileops_daemon.client.mcp_server import http_url
from tests.emulators.harness import free_port

FILEOPS = [sys.executable, "-m", "fileops_daemon.cli"]

#: Every kind of address ``--host`` accepts: the SDK's three, another 127/8 address, and
#: IPv6 loopback in its long and zero-padded spellings.
HOSTS = ["127.0.0.1", "localhost", "::1", "127.0.0.2", "127.255.255.254", "0:0:0:0:0:0:0:1"]

INITIALIZE = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "probe", "version": "1"},
        },
    }
).encode()


@contextmanager
def mcp_http(host: str, tmp: Path) -> Iterator[tuple[str, int]]:
    """``fileops mcp --http --host HOST`` on a free port; yields (its URL line, port)."""
    port = free_port()
    err = tmp / f"mcp-{host.replace(':', '_')}.err"
    env = {**os.environ, "FILEOPS_PROJECT": "p-not-used", "PUBSUB_EMULATOR_HOST": "127.0.0.1:9"}
    with err.open("wb") as sink:
        proc = subprocess.Popen(
            [*FILEOPS, "mcp", "--http", "--host", host, "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "serving on" not in err.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no 'serving on' line: {err.read_text()}")
            time.sleep(0.05)
        yield err.read_text().strip(), port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def post(host: str, port: int, headers: dict[str, str]) -> int:
    """POST ``initialize`` to /mcp with these headers; the HTTP status."""
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.putrequest("POST", "/mcp", skip_host=True, skip_accept_encoding=True)
        for name, value in {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "Content-Length": str(len(INITIALIZE)),
            **headers,
        }.items():
            connection.putheader(name, value)
        connection.endheaders(INITIALIZE)
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.parametrize("host", HOSTS)
def test_a_foreign_host_or_origin_is_refused_on_every_loopback_address(
    host: str, tmp_path: Path
) -> None:
    with mcp_http(host, tmp_path) as (line, port):
        own = http_url(host, port).removeprefix("http://").removesuffix("/mcp")
        # The one line says where: the URL a client connects to.
        assert (
            line == f"fileops: MCP serving on http://{own}/mcp (streamable HTTP; Ctrl-C stops it)"
        )
        assert post(host, port, {"Host": f"evil.example:{port}"}) == 421
        assert post(host, port, {"Host": "evil.example"}) == 421
        assert post(host, port, {"Host": own, "Origin": f"http://evil.example:{port}"}) == 403
        # Another local web page (another port of this machine) is foreign too.
        other = own.rsplit(":", 1)[0] + f":{port + 1}"
        assert post(host, port, {"Host": own, "Origin": f"http://{other}"}) == 403
        # The server's own name passes: the refusals above are the check, not a dead server.
        assert post(host, port, {"Host": own}) == 200
        assert post(host, port, {"Host": own, "Origin": f"http://{own}"}) == 200
