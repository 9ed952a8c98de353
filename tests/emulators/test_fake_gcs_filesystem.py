"""fake-gcs-server's filesystem backend, where ``make run`` keeps its buckets so that a restart
keeps the ledger, the audit records and the undo history (issue 22).

The ledger depends on generation preconditions on uploads (``ifGenerationMatch``): the
LedgerStore contract the memory backend is held to runs here unchanged, and objects keep their
bytes and generations across a restart of the server on the same folder.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fileops_daemon.service.cloud import CloudRetry
from fileops_daemon.service.ledger_store import GcsLedgerStore, GenerationMismatchError, Stored
from tests.emulators import harness
from tests.service.test_ledger_store import TestLedgerStoreContract as _Contract

JSON = "application/json"


def _store(endpoint: str, bucket: str, *, create: bool) -> GcsLedgerStore:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="unit",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": endpoint},
    )
    handle = client.create_bucket(bucket) if create else client.bucket(bucket)
    return GcsLedgerStore(handle, CloudRetry(2, 0.01, 0.05))


@pytest.fixture(scope="module")
def disk_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("fake-gcs-disk")
    with harness.gcs_emulator(
        log_path=root / "fake-gcs.log", filesystem_root=root / "buckets"
    ) as endpoint:
        yield endpoint


@pytest.fixture
def store(disk_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> GcsLedgerStore:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", disk_endpoint)
    return _store(disk_endpoint, f"store-{uuid.uuid4().hex[:12]}", create=True)


class TestLedgerStoreContractOnDisk(_Contract):
    """Every case of the contract, on ``-backend filesystem``."""


def test_objects_and_their_generations_outlive_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "buckets"
    with harness.gcs_emulator(log_path=tmp_path / "one.log", filesystem_root=root) as endpoint:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
        before = _store(endpoint, "ledger", create=True)
        first = before.write("plans/p.json", b"one", content_type=JSON, if_generation_match=0)
        second = before.write("plans/p.json", b"two", content_type=JSON, if_generation_match=first)
    with harness.gcs_emulator(log_path=tmp_path / "two.log", filesystem_root=root) as endpoint:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
        after = _store(endpoint, "ledger", create=False)
        assert after.read("plans/p.json") == Stored(b"two", second)
        with pytest.raises(GenerationMismatchError):  # a stale generation still loses
            after.write("plans/p.json", b"stale", content_type=JSON, if_generation_match=first)
        with pytest.raises(GenerationMismatchError):  # and a second create
            after.write("plans/p.json", b"again", content_type=JSON, if_generation_match=0)
        third = after.write("plans/p.json", b"three", content_type=JSON, if_generation_match=second)
        assert third > second
        assert harness.list_objects(endpoint, "ledger") == ["plans/p.json"]
