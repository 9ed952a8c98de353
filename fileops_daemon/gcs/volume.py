"""A bucket as the projects root: case folders are the top-level prefixes ``<case>/``."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from typing import Any

from google.api_core import exceptions as gexc

from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.core.paths import WORK_DIR_NAME, nfc
from fileops_daemon.core.simulate import only_case
from fileops_daemon.core.tree import Kind
from fileops_daemon.core.volume import CaseFiles, Listed, TreeSource
from fileops_daemon.gcs.bucket import BucketRequests, ClientFactory, is_link
from fileops_daemon.gcs.case_objects import CaseObjects

__all__ = ["GcsVolume"]

#: Names a filesystem cannot hold; an object whose name has such a part is listed as a
#: special file, so a plan touching it (or a folder around it) is refused, not half-moved.
_UNREPRESENTABLE = frozenset({"", ".", ".."})


class GcsTreeSource:
    """The case folder as the simulation reads it: one listing per folder it looks into,
    read a page at a time. An item's origin is its object name (a folder's without the
    trailing slash); the case folder itself comes as its address ``gs://bucket/<case>``. A
    file's version is its generation as listed (``g:<generation>``): its ``expect`` is checked
    on that generation, and its steps act on that generation only."""

    def __init__(self, requests: BucketRequests, root: str) -> None:
        self._requests = requests
        self._root = root + "/"

    def list(self, origin: str) -> Iterator[Listed]:
        prefix = origin.removeprefix(self._root) + "/"
        for blobs, folders in self._requests.pages(prefix):
            for blob in blobs:
                name = blob.name[len(prefix) :]
                if not name:
                    continue  # the folder's own placeholder
                kind = Kind.SYMLINK if is_link(blob) else Kind.FILE
                if name in _UNREPRESENTABLE:
                    kind = Kind.OTHER
                version = f"g:{blob.generation}" if blob.generation else None
                yield name, kind, blob.name, int(blob.size or 0), version
            for folder in folders:
                name = folder[len(prefix) : -1]
                kind = Kind.OTHER if name in _UNREPRESENTABLE else Kind.DIR
                yield name, kind, folder[:-1], None, None

    def size(self, origin: str) -> int:
        blob = self._requests.stat(origin)
        if blob is None:
            raise FileNotFoundError(origin)
        return int(blob.size or 0)

    def sha256(self, origin: str, version: str | None = None) -> str:
        if version is not None and version.startswith("g:"):
            generation = int(version[2:])
        else:
            blob = self._requests.stat(origin)
            if blob is None or blob.generation is None:
                raise FileNotFoundError(origin)
            generation = int(blob.generation)
        try:
            return self._requests.sha256(origin, generation)
        except gexc.PreconditionFailed:
            # Replaced since it was listed: the simulation reads the tree again (ESTALE is
            # retried), and checks the new generation.
            raise OSError(errno.ESTALE, "the object changed while it was read", origin) from None

    def stamp(self, origin: str, sha256: str | None) -> str | None:
        return None  # the listing's generation pins it already


class GcsVolume:
    """The case folders of one bucket, read and changed through the JSON API."""

    def __init__(self, bucket: str, client_factory: ClientFactory) -> None:
        self.bucket = bucket
        self.root = f"gs://{bucket}"
        self.requests = BucketRequests(bucket, client_factory)

    def _folder(self, case_dir: str) -> str:
        """The case folder's name from its address ``gs://bucket/<folder>``."""
        folder = case_dir.removeprefix(self.root + "/")
        if folder == case_dir or not folder or "/" in folder:
            raise ValueError(f"{case_dir!r} is not a case folder of {self.root}")
        return folder

    def locate_case(self, case_name: str) -> str:
        wanted = nfc(case_name)
        folder_seen = False
        if wanted.isascii():
            # No other spelling normalises to a pure ASCII name: skip listing the bucket.
            folder_seen = self.requests.exists_below(wanted + "/")
            exists = folder_seen or self.requests.stat(wanted) is not None
            candidates = [wanted] if exists else []
        else:
            blobs, folders = self.requests.listing("")
            names = {blob.name for blob in blobs} | {folder[:-1] for folder in folders}
            candidates = sorted(name for name in names if nfc(name) == wanted)
        folder = only_case(candidates, wanted, self.root)
        blob = self.requests.stat(folder)
        if blob is not None and is_link(blob):
            raise PlanError(
                ErrorCode.SYMLINK_REFUSED, f"the case folder {wanted!r} is a symbolic link"
            )
        if not folder_seen and not self.requests.exists_below(folder + "/"):
            raise PlanError(ErrorCode.CASE_MISSING, f"{wanted!r} in {self.root} is not a folder")
        return f"{self.root}/{folder}"

    def source_listing(self, sources: list[str]) -> list[list[Any]]:
        """What an approval was shown, to tell later whether it changed: each source path
        and every object below it as (path, kind, size, generation)."""
        listing: list[list[Any]] = []
        for shown in sources:
            blob = self.requests.stat(shown)
            if blob is not None:
                listing.append([shown, "file", int(blob.size or 0), int(blob.generation or 0)])
                continue
            blobs = self.requests.objects_below(shown + "/")
            if not blobs:
                listing.append([shown, "missing", 0, 0])
                continue
            listing.append([shown, "dir", 0, 0])
            for below in sorted(blobs, key=lambda b: str(b.name)):
                kind = "dir" if below.name.endswith("/") else "file"
                listing.append([below.name, kind, int(below.size or 0), int(below.generation or 0)])
        return listing

    def tree_source(self, case_dir: str) -> TreeSource:
        return GcsTreeSource(self.requests, self.root)

    def open_case(self, case_dir: str) -> CaseFiles:
        folder = self._folder(case_dir)
        if not self.requests.exists_below(folder + "/"):
            raise FileNotFoundError(f"the case folder {folder} is gone from {self.root}")
        return CaseObjects(self.requests, folder + "/", case_dir)

    def tidy_work_dirs(self, case_dir: str, plan_id: str, *, keep_trash: bool) -> None:
        """Drop the placeholders of the plan's work folders that hold no file any more (its
        trash stays whole when ``keep_trash``), then the work root's if it is empty."""
        top = f"{self._folder(case_dir)}/{WORK_DIR_NAME}/"
        base = f"{top}{plan_id}/"
        try:
            names = self.requests.names_below(base)
        except OSError:
            return  # tidying is best effort; the next apply of this case tidies again
        holding: set[str] = set()  # every folder above a file
        for name in names:
            if not name.endswith("/"):
                parts = name.split("/")
                holding.update("/".join(parts[:depth]) + "/" for depth in range(1, len(parts)))
        trash = f"{base}trash/"
        placeholders = sorted((n for n in names if n.endswith("/")), key=len, reverse=True)
        for placeholder in placeholders:
            if placeholder in holding or (keep_trash and placeholder.startswith(trash)):
                continue
            self.requests.delete_if_present(placeholder)
        try:
            rest = self.requests.names_below(top, limit=2)
        except OSError:
            return
        if rest == [top]:  # other plans' trash may still be there
            self.requests.delete_if_present(top)
