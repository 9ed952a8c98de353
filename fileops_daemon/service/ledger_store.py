"""Where the ledger keeps its objects: the little it needs of a store, and the GCS store.

The ledger asks two things: read an object together with the generation its bytes belong to,
and write an object only while it is still at a named generation (0: only if it does not exist
yet). Every write makes a new generation, so a writer holding a stale one is told, never
silently overwrites. ``memstore.MemoryLedgerStore`` keeps the same promises in memory.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from google.api_core.exceptions import NotFound, PreconditionFailed
from google.cloud import storage

from fileops_daemon.service.cloud import CloudRetry

__all__ = [
    "GcsLedgerStore",
    "GenerationMismatchError",
    "LedgerStore",
    "Stored",
    "UnstableObjectError",
]

#: Reads of an object that changed between its metadata and its bytes, before giving up.
_READ_ATTEMPTS = 5


class GenerationMismatchError(Exception):
    """The object is not at the generation the write named (GCS answers 412)."""


class UnstableObjectError(Exception):
    """The object changed under every attempt to read it whole."""


class Stored(NamedTuple):
    """An object's bytes and the generation they belong to."""

    data: bytes
    generation: int


class LedgerStore(Protocol):
    def read(self, name: str) -> Stored | None:
        """The object's bytes and their generation, or None if it does not exist."""
        ...

    def write(
        self, name: str, data: bytes, *, content_type: str, if_generation_match: int | None
    ) -> int:
        """Store ``data`` under ``name`` and return its new generation.

        ``if_generation_match``: write only if the object is at that generation (0: absent),
        else raise GenerationMismatchError; None writes unconditionally.
        """
        ...


class GcsLedgerStore:
    """A LedgerStore on a GCS bucket; transient faults are retried by ``retry``, then raised
    (a google.api_core or transport exception) to the ledger's caller."""

    def __init__(self, bucket: storage.Bucket, retry: CloudRetry) -> None:
        self.bucket = bucket
        self.retry = retry

    def read(self, name: str) -> Stored | None:
        # One request: a download's answer names the generation of the very bytes it carries
        # (x-goog-generation), so the pair belongs together by construction. Every ledger
        # read is on the way to a plan's result, and at GCS's latency each request counts.
        blob = self.bucket.blob(name)
        try:
            data: bytes = self.retry.call(blob.download_as_bytes, retry=None)
        except NotFound:
            return None
        if blob.generation is not None:
            return Stored(data, int(blob.generation))
        return self._read_in_two(name)  # a server that did not say: ask for it

    def _read_in_two(self, name: str) -> Stored | None:
        # Metadata and bytes are two requests: the download names the generation the metadata
        # gave, so the pair belongs together or the read starts over.
        for _ in range(_READ_ATTEMPTS):
            blob = self.retry.call(self.bucket.get_blob, name, retry=None)
            if blob is None:
                return None
            try:
                data = self.retry.call(
                    blob.download_as_bytes, if_generation_match=blob.generation, retry=None
                )
            except (PreconditionFailed, NotFound):
                continue  # rewritten or deleted between the two calls: read again
            return Stored(data, int(blob.generation))
        raise UnstableObjectError(f"ledger object {name} keeps changing")

    def write(
        self, name: str, data: bytes, *, content_type: str, if_generation_match: int | None
    ) -> int:
        blob = self.bucket.blob(name)
        try:
            self.retry.call(
                blob.upload_from_string,
                data,
                content_type=content_type,
                if_generation_match=if_generation_match,
                retry=None,
            )
        except PreconditionFailed as exc:
            raise GenerationMismatchError(
                f"{name} is not at generation {if_generation_match}"
            ) from exc
        return int(blob.generation)
