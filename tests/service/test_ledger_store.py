"""The LedgerStore contract, run on both stores: the in-memory one the unit tests use and the GCS
one the daemon uses (on fake-gcs-server, started once for this module). Whatever the memory
store answers here, GCS answers too; that is what lets the ledger's unit tests stand for it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from fileops_daemon.service.cloud import CloudRetry
from fileops_daemon.service.ledger_store import (
    GcsLedgerStore,
    GenerationMismatchError,
    LedgerStore,
    Stored,
)
from fileops_daemon.service.memstore import MemoryLedgerStore
from tests.emulators import harness

JSON = "application/json"


@pytest.fixture(scope="module")
def gcs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("fake-gcs")
    with harness.gcs_emulator(log_path=logs / "fake-gcs.log") as endpoint:
        yield endpoint


@pytest.fixture(params=["memory", "gcs"])
def store(request: pytest.FixtureRequest) -> Iterator[LedgerStore]:
    if request.param == "memory":
        yield MemoryLedgerStore()
        return
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    endpoint = request.getfixturevalue("gcs_endpoint")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORAGE_EMULATOR_HOST", endpoint)
        client = storage.Client(
            project="unit",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": endpoint},
        )
        bucket = client.create_bucket(f"store-{uuid.uuid4().hex[:12]}")
        yield GcsLedgerStore(bucket, CloudRetry(2, 0.01, 0.05))


def write(store: LedgerStore, name: str, data: bytes, generation: int | None) -> int:
    return store.write(name, data, content_type=JSON, if_generation_match=generation)


class TestLedgerStoreContract:
    def test_a_missing_object_reads_as_none(self, store: LedgerStore) -> None:
        assert store.read("plans/none.json") is None

    def test_generation_zero_creates_once(self, store: LedgerStore) -> None:
        generation = write(store, "plans/p.json", b"one", 0)
        assert generation > 0
        assert store.read("plans/p.json") == Stored(b"one", generation)
        with pytest.raises(GenerationMismatchError):
            write(store, "plans/p.json", b"two", 0)
        assert store.read("plans/p.json") == Stored(b"one", generation)

    def test_a_write_naming_the_current_generation_makes_a_newer_one(
        self, store: LedgerStore
    ) -> None:
        first = write(store, "plans/p.json", b"one", 0)
        second = write(store, "plans/p.json", b"two", first)
        assert second > first
        assert store.read("plans/p.json") == Stored(b"two", second)

    def test_a_write_naming_a_stale_generation_changes_nothing(self, store: LedgerStore) -> None:
        first = write(store, "plans/p.json", b"one", 0)
        second = write(store, "plans/p.json", b"two", first)
        with pytest.raises(GenerationMismatchError):
            write(store, "plans/p.json", b"three", first)
        assert store.read("plans/p.json") == Stored(b"two", second)

    def test_a_generation_named_for_a_missing_object_fails(self, store: LedgerStore) -> None:
        with pytest.raises(GenerationMismatchError):
            write(store, "plans/p.json", b"one", 12345)
        assert store.read("plans/p.json") is None

    def test_an_unconditional_write_creates_or_replaces(self, store: LedgerStore) -> None:
        first = write(store, "journals/p.jsonl", b"one", None)
        second = write(store, "journals/p.jsonl", b"two", None)
        assert second > first
        assert store.read("journals/p.jsonl") == Stored(b"two", second)

    def test_objects_keep_their_bytes_exactly(self, store: LedgerStore) -> None:
        data = '{"case_name":"Caf\u00e9 \ud83d"}'.encode("utf-8", "surrogatepass") + b"\x00\xff"
        generation = write(store, "cases/abc.json", data, 0)
        assert store.read("cases/abc.json") == Stored(data, generation)
