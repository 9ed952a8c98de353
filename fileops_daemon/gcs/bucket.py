"""The object requests fileops makes, each with its precondition, and how names are formed.

Every change carries a generation precondition, so it acts only on the object it was decided
on: a create succeeds only where no object exists (``ifGenerationMatch=0``), a copy only from
the source generation that was read (``ifSourceGenerationMatch``), a delete only of that
generation. A lost race comes back as HTTP 412 and becomes a step conflict, never an overwrite.

No request is retried by the client library: a retried create whose first try landed would
come back 412 and read as a conflict. The core retries instead, after reading the tree again.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

from google.api_core import exceptions as gexc
from google.cloud import storage

from fileops_daemon.gcs.errors import as_os_errors

__all__ = ["SYMLINK_METADATA", "BucketRequests", "ClientFactory", "is_link"]

ClientFactory = Callable[[], storage.Client]

#: gcsfuse keeps a symbolic link as an object carrying its target in this metadata key.
SYMLINK_METADATA = "gcsfuse_symlink_target"

#: (connect, read) seconds for one request: a stalled bucket fails the try, which is retried.
_TIMEOUT = (10.0, 60.0)


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

    def _bucket(self) -> storage.Bucket:
        # One client per thread: a client's HTTP session is not meant to be shared by the
        # step workers, and each keeps its own connection pool.
        bucket: storage.Bucket | None = getattr(self._local, "bucket", None)
        if bucket is None:
            bucket = self._client_factory().bucket(self.bucket_name)
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
        """SHA-256 of exactly that generation of the object (412 if it changed)."""
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
