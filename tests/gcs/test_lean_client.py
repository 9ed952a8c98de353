"""The daemon's storage client makes only the requests fileops asks for: the library's
bucket-metadata cache would GET the bucket once per client and again after every 404 (each
ledger record or lease that is not there yet), counted here by the proxy in front of
fake-gcs-server."""

from __future__ import annotations

import os
import time

import pytest

from fileops_daemon.service.cloud import CloudRetry, storage_client
from fileops_daemon.service.ledger_store import GcsLedgerStore
from tests.emulators.latency_proxy import LatencyProxy
from tests.gcs.support import Bucket


def test_reading_missing_records_costs_one_request_each_and_nothing_more(
    bucket: Bucket, proxy: LatencyProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.endpoint)
    store = GcsLedgerStore(storage_client("fileops-test").bucket(bucket.name), CloudRetry(1))
    proxy.reset()
    assert [store.read(f"plans/missing-{n}.json") for n in range(3)] == [None] * 3
    store.write("plans/there.json", b"{}", content_type="application/json", if_generation_match=0)
    assert store.read("plans/there.json") is not None
    time.sleep(1.0)  # the library's checks run in threads of their own: give them time
    assert proxy.snapshot() == {"GET download": 4, "POST upload": 1}


def test_the_session_reads_the_environment_once_unless_a_proxy_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")
    for name in [n for n in os.environ if n.lower().endswith("_proxy")] + ["NETRC"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    settled = storage_client("p")._http
    assert (settled.trust_env, settled.verify) == (False, "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.firm.example:3128")
    assert storage_client("p")._http.trust_env is True  # requests applies its proxy rules
