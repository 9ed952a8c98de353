"""The object requests fileops makes, each with its precondition, and how names are formed.

Every change carries a generation precondition, so it acts only on the object it was decided
on: a create succeeds only where no object exists (``ifGenerationMatch=0``), a move or copy only
from the source generation the simulation listed (``ifSourceGenerationMatch``), a delete only of
that generation. A lost race comes back as HTTP 412 and becomes a step conflict, never an
overwrite.

A move is one ``objects.move`` request (atomic, both preconditions) where the bucket has it,
a copy and a delete where it has not: the first move through a ``BucketRequests`` finds out,
alone, and the answer holds for the bucket from then on (logged once, ``gcs.objects_move``).
``FILEOPS_GCS_OBJECTS_MOVE=off`` skips it (copy and delete only): for a server that answers
``objects.move`` but not as GCS does, such as Google's storage testbench (docs/daemon.md).

No request is retried by the client library: a retried create whose first try landed would
come back 412 and read as a conflict. The core retries instead, after reading the tree again.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator

import structlog
from google.api_core import exceptions as gexc
from google.cloud import storage

from fileops_daemon.gcs.errors import as_os_errors
from fileops_daemon.gcs.lean import lean_client

__all__ = ["SYMLINK_METADATA", "BucketRequests", "ClientFactory", "is_link"]

ClientFactory = Callable[[], storage.Client]

#: gcsfuse keeps a symbolic link as an object carrying its target in this metadata key.
SYMLINK_METADATA = "gcsfuse_symlink_target"

#: (connect, read) seconds for one request: a stalled bucket fails the try, which is retried.
_TIMEOUT = (10.0, 60.0)

#: How a bucket without ``objects.move`` answers it (fake-gcs-server: 404 for the route; a
#: flat bucket where Google has not enabled it: 400 or 501), told from a missing source by a
#: look at the source.
_NO_MOVE = (gexc.NotFound, gexc.BadRequest, gexc.MethodNotAllowed, gexc.MethodNotImplemented)

log = structlog.get_logger("fileops.gcs")


def is_link(blob: storage.Blob) -> bool:
    return SYMLINK_METADATA in (blob.metadata or {})


class _HashingSink:
    """A file-like target for a download that keeps only the SHA-256 of what it got."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return len(data)


class BucketRequests:
    """The requests below one bucket; safe to share between threads (one client each)."""

    def __init__(self, bucket_name: str, client_factory: ClientFactory) -> None:
        self.bucket_name = bucket_name
        self._client_factory = client_factory
        self._local = threading.local()
        #: Whether the bucket answers ``objects.move``; None until the first move finds out.
        self.can_move: bool | None = None
        self._move_probe = threading.Lock()
        setting = os.environ.get("FILEOPS_GCS_OBJECTS_MOVE", "auto").strip().lower()
        if setting not in ("auto", "off"):
            raise ValueError(f"FILEOPS_GCS_OBJECTS_MOVE must be auto or off, not {setting!r}")
        if setting == "off":
            self._decided(False)

    def _bucket(self) -> storage.Bucket:
        # One client per thread: a client's HTTP session is not meant to be shared by the
        # step workers, and each keeps its own connection pool.
        bucket: storage.Bucket | None = getattr(self._local, "bucket", None)
        if bucket is None:
            client = lean_client(self._client_factory())
            bucket = client.bucket(self.bucket_name)
            self._local.bucket = bucket
        return bucket

    # -- reading ------------------------------------------------------------------------------

    def stat(self, name: str) -> storage.Blob | None:
        """The object's metadata (generation, size, metadata), or None if there is none."""
        with as_os_errors(name):
            blob: storage.Blob | None = self._bucket().get_blob(name, retry=None, timeout=_TIMEOUT)
        return blob

    def exists_below(self, prefix: str) -> bool:
        """True when some object's name starts with ``prefix`` (a folder, in the mount's view)."""
        return bool(self.names_below(prefix, limit=1))

    def names_below(self, prefix: str, *, limit: int | None = None) -> list[str]:
        return [str(blob.name) for blob in self.objects_below(prefix, limit=limit)]

    def objects_below(self, prefix: str, *, limit: int | None = None) -> list[storage.Blob]:
        """Every object whose name starts with ``prefix`` (all levels), in name order."""
        bucket = self._bucket()
        with as_os_errors(prefix):
            blobs = bucket.client.list_blobs(
                bucket, prefix=prefix, max_results=limit, retry=None, timeout=_TIMEOUT
            )
            return list(blobs)

    def pages(self, prefix: str) -> Iterator[tuple[list[storage.Blob], tuple[str, ...]]]:
        """``listing`` one page (up to 1,000 items) at a time, each page read when needed: a
        walk that stops early lists no further."""
        bucket = self._bucket()
        with as_os_errors(prefix):
            iterator = bucket.client.list_blobs(
                bucket, prefix=prefix, delimiter="/", retry=None, timeout=_TIMEOUT
            )
            for page in iterator.pages:
                blobs = list(page)
                yield blobs, tuple(getattr(page, "prefixes", ()))

    def listing(self, prefix: str) -> tuple[list[storage.Blob], list[str]]:
        """The objects directly below ``prefix`` and the sub-prefixes (folders) there."""
        bucket = self._bucket()
        with as_os_errors(prefix):
            pages = bucket.client.list_blobs(
                bucket, prefix=prefix, delimiter="/", retry=None, timeout=_TIMEOUT
            )
            blobs = list(pages)
            return blobs, sorted(pages.prefixes)

    def sha256(self, name: str, generation: int) -> str:
        """SHA-256 of exactly that generation of the object (PreconditionFailed if it
        changed)."""
        sink = _HashingSink()
        with as_os_errors(name):
            self._bucket().blob(name).download_to_file(
                sink,
                if_generation_match=generation,
                checksum=None,
                retry=None,
                timeout=_TIMEOUT,
            )
        return sink.digest.hexdigest()

    # -- changing -----------------------------------------------------------------------------

    def create(self, name: str, content: bytes) -> None:
        """A new object; 412 (PreconditionFailed) if one exists under that name."""
        with as_os_errors(name):
            self._bucket().blob(name).upload_from_string(
                content, if_generation_match=0, retry=None, timeout=_TIMEOUT
            )

    def copy(self, source: str, generation: int, target: str) -> int:
        """A server-side copy of that generation of ``source`` to a new ``target`` (412 if
        the source changed or the target exists); the target's generation."""
        bucket = self._bucket()
        target_blob = bucket.blob(target)
        token: str | None = None
        with as_os_errors(source):
            while True:
                token, _done, _total = target_blob.rewrite(
                    bucket.blob(source),
                    token=token,
                    if_generation_match=0,
                    if_source_generation_match=generation,
                    retry=None,
                    timeout=_TIMEOUT,
                )
                if token is None:  # large objects are copied in several calls
                    break
        return int(target_blob.generation or 0)

    def move(self, source: str, generation: int, target: str) -> int | None:
        """Move that generation of ``source`` to a new ``target`` in one atomic request (412
        if the source changed or the target exists): the target's generation; None when the
        bucket has no ``objects.move`` (then nothing was done: copy and delete instead)."""
        if self.can_move is None:
            with self._move_probe:  # the first move finds out alone; the others wait for it
                if self.can_move is None:
                    return self._first_move(source, generation, target)
        if not self.can_move:
            return None
        return self._move(source, generation, target)

    def _move(self, source: str, generation: int, target: str) -> int:
        bucket = self._bucket()
        with as_os_errors(source):
            moved = bucket.move_blob(
                bucket.blob(source),
                target,
                if_generation_match=0,
                if_source_generation_match=generation,
                retry=None,
                timeout=_TIMEOUT,
            )
        return int(moved.generation or 0)

    def _first_move(self, source: str, generation: int, target: str) -> int | None:
        try:
            moved = self._move(source, generation, target)
        except (OSError, gexc.GoogleAPICallError) as exc:
            refused = exc.__cause__ if isinstance(exc, OSError) else exc
            if isinstance(refused, gexc.PreconditionFailed):
                self._decided(True)  # understood, and refused as GCS refuses a lost race
                raise
            if not isinstance(refused, _NO_MOVE) or self.stat(source) is None:
                raise  # a passing fault, or the source really is gone: decide next time
            self._decided(False, refused)
            return None
        self._decided(True)
        return moved

    def _decided(self, can_move: bool, refusal: BaseException | None = None) -> None:
        self.can_move = can_move
        log.info(
            "gcs.objects_move",
            bucket=self.bucket_name,
            objects_move=can_move,
            moves="one objects.move request" if can_move else "copy, then delete",
            refusal=type(refusal).__name__ if refusal is not None else None,
        )

    def delete(self, name: str, generation: int) -> None:
        """Delete exactly that generation (412 if the object changed since)."""
        with as_os_errors(name):
            self._bucket().blob(name).delete(
                if_generation_match=generation, retry=None, timeout=_TIMEOUT
            )

    def delete_if_present(self, name: str) -> None:
        """Tidying our own placeholders: delete the object as it is now, if it is there;
        a failure is left for the next tidy (nothing depends on it)."""
        try:
            blob = self.stat(name)
            if blob is not None and blob.generation is not None:
                self.delete(name, int(blob.generation))
        except (OSError, gexc.GoogleAPICallError):
            return
