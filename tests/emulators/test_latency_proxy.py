"""The benchmarks' latency proxy: every request reaches fake-gcs-server intact, once, late."""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emulators import harness
from tests.emulators.latency_proxy import LatencyProxy, latency_proxy, request_kind

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("proxy") / "fake-gcs.log"
    with harness.gcs_emulator(log_path=log) as endpoint:
        yield endpoint


def _call(method: str, url: str, data: bytes | None = None) -> bytes:
    request = urllib.request.Request(url, data=data, method=method)
    with _OPENER.open(request, timeout=30) as response:
        body: bytes = response.read()
        return body


def _upload(proxy: LatencyProxy, bucket: str, name: str, data: bytes) -> None:
    query = urllib.parse.urlencode({"uploadType": "media", "name": name})
    _call("POST", f"{proxy.endpoint}/upload/storage/v1/b/{bucket}/o?{query}", data)


def test_requests_arrive_intact_and_are_counted_by_kind(gcs: str, tmp_path: Path) -> None:
    with latency_proxy(gcs, delay_ms=0) as proxy:
        harness.create_bucket(proxy.endpoint, "counted")
        payload = bytes(range(256)) * 1000  # binary, and larger than one socket read
        _upload(proxy, "counted", "a/b.bin", payload)
        name = urllib.parse.quote("a/b.bin", safe="")
        assert _call("GET", f"{proxy.endpoint}/download/storage/v1/b/counted/o/{name}") == payload
        assert harness.list_objects(proxy.endpoint, "counted") == ["a/b.bin"]
        assert proxy.snapshot() == {
            "POST other": 1,
            "POST upload": 1,
            "GET download": 1,
            "GET list": 1,
        }
        proxy.reset()
        assert proxy.total == 0


def test_each_request_waits_the_delay(gcs: str) -> None:
    harness.create_bucket(gcs, "slow")
    with latency_proxy(gcs, delay_ms=50) as proxy:
        started = time.monotonic()
        for _ in range(4):
            harness.list_objects(proxy.endpoint, "slow")
        assert time.monotonic() - started >= 4 * 0.05
        assert proxy.total == 4


def test_request_kinds() -> None:
    assert request_kind("/storage/v1/b/p/o/a%2Fb/rewriteTo/b/p/o/c?x=1") == "rewrite"
    assert request_kind("/storage/v1/b/p/o/a%2Fb/moveTo/o/c") == "move"
    assert request_kind("/storage/v1/b/p/o/a%2Fb") == "object"
    assert request_kind("/storage/v1/b/p/o?prefix=a") == "list"
    assert request_kind("/upload/storage/v1/b/p/o?uploadType=media") == "upload"
