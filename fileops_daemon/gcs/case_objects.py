"""The steps of a plan as object requests below one case folder (``CaseFiles`` for a bucket).

A file is an object named ``<case>/<path>``; a folder is the prefix ``<case>/<path>/``, with a
placeholder object of that name when fileops (or gcsfuse) made it. What the steps need from a
filesystem and how it is kept here:

- rename never replaces, and moves only the source generation the simulation listed
  (``Step.version``; read now only for a step without one, such as a rollback's): one
  ``objects.move`` with ``ifGenerationMatch=0`` (fails if the target exists) and
  ``ifSourceGenerationMatch`` (fails if the source changed), atomic; on a bucket without it a
  server-side copy with the same preconditions, then a delete of that source generation. A
  crash between those two leaves both names with the same content; the core's resume sees that
  (``StepState.DUPLICATE``) and finishes the move. A source changed since the check is a
  ``SourceChangedError`` with nothing left done.
- mkdir fails if the folder's placeholder exists; rmdir fails while any object lies below it.
- copy and write create their target with ``ifGenerationMatch=0``: an object appears whole or
  not at all, so no staging name is needed.
- gcsfuse's symbolic links (objects carrying ``gcsfuse_symlink_target``) are refused, never
  moved. There are no mounts or special files in a bucket.

What a bucket cannot give: a folder is not a thing that can be locked, so a file another writer
puts into a folder while a step moves that folder's last file out is not seen by that step
(the folder's removal, a later step, then fails: the folder is not empty).
"""

from __future__ import annotations

import contextlib
import errno
import threading

from google.api_core import exceptions as gexc

from fileops_daemon.contract.errors import ErrorCode
from fileops_daemon.core.fsops import SourceChangedError, StepConflictError
from fileops_daemon.core.steps import Parts
from fileops_daemon.core.tree import Kind
from fileops_daemon.gcs.bucket import BucketRequests, is_link

__all__ = ["CaseObjects"]


def _show(parts: Parts) -> str:
    return "/".join(parts)


class CaseObjects:
    """Confined object requests below one case folder (paths are tuples of names below it)."""

    def __init__(self, requests: BucketRequests, case_prefix: str, case_dir: str) -> None:
        self.case_dir = case_dir
        self._requests = requests
        self._prefix = case_prefix  # "<case folder>/"
        self._made: set[Parts] = set()  # our own folders known to exist (makedirs)
        self._kept: set[Parts] = set()  # folders given a placeholder so they outlive their files
        # One worker makes a placeholder; the others that reach the folder meanwhile wait
        # for it instead of each sending a create that comes back 412.
        self._placing = threading.Lock()

    def close(self) -> None:
        """Nothing to release: each worker thread's client closes with the thread."""

    def _name(self, parts: Parts) -> str:
        return self._prefix + "/".join(parts)

    def _file(self, parts: Parts) -> int:
        """The generation of the plain file at ``parts``; ENOENT if there is none."""
        blob = self._requests.stat(self._name(parts))
        if blob is None or blob.generation is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", _show(parts))
        if is_link(blob):
            raise StepConflictError(
                f"{_show(parts)} became a symbolic link", ErrorCode.SYMLINK_REFUSED
            )
        return int(blob.generation)

    # -- reading ------------------------------------------------------------------------------

    def kind(self, parts: Parts) -> Kind | None:
        """What stands at ``parts`` now (links are reported, not followed); None if nothing."""
        if parts:
            blob = self._requests.stat(self._name(parts))
            if blob is not None:
                return Kind.SYMLINK if is_link(blob) else Kind.FILE
        if self._requests.exists_below(self._name(parts).rstrip("/") + "/"):
            return Kind.DIR
        return None

    def sha256(self, parts: Parts) -> str:
        generation = self._file(parts)
        try:
            return self._requests.sha256(self._name(parts), generation)
        except gexc.PreconditionFailed:
            raise StepConflictError(f"{_show(parts)} changed while it was read") from None

    # -- changes ------------------------------------------------------------------------------

    def mkdir(self, parts: Parts) -> None:
        try:
            self._requests.create(self._name(parts) + "/", b"")
        except gexc.PreconditionFailed:
            raise FileExistsError(errno.EEXIST, "the folder exists", _show(parts)) from None

    def makedirs(self, parts: Parts) -> None:
        """Placeholders for the daemon's own folders (trash), so a mount shows them."""
        for depth in range(1, len(parts) + 1):
            if parts[:depth] in self._made:
                continue
            with self._placing:
                if parts[:depth] in self._made:
                    continue
                with contextlib.suppress(FileExistsError):
                    self.mkdir(parts[:depth])
                self._made.add(parts[:depth])

    def _keep_folder(self, folder: Parts) -> None:
        """A folder without a placeholder exists only through the objects below it: give it
        one before its last object could leave, as a filesystem keeps an emptied folder (and
        as the simulation assumed). One request per folder and run."""
        if not folder or folder in self._kept:
            return
        with self._placing:
            if folder in self._kept:
                return
            with contextlib.suppress(FileExistsError):
                self.mkdir(folder)
            self._kept.add(folder)

    def rmdir(self, parts: Parts) -> None:
        self._kept.discard(parts)
        self._made.discard(parts)
        folder = self._name(parts) + "/"
        below = self._requests.names_below(folder, limit=2)
        if any(name != folder for name in below):
            raise OSError(errno.ENOTEMPTY, "the folder is not empty", _show(parts))
        if folder not in below:
            raise FileNotFoundError(errno.ENOENT, "no such folder", _show(parts))
        self._requests.delete_if_present(folder)

    def unlink(self, parts: Parts) -> None:
        generation = self._file(parts)
        self._keep_folder(parts[:-1])
        try:
            self._requests.delete(self._name(parts), generation)
        except gexc.PreconditionFailed:
            raise StepConflictError(f"{_show(parts)} changed meanwhile; left in place") from None

    def _pinned(self, src: Parts, version: str | None) -> int:
        """The source generation a step acts on: the one the simulation listed, else (a
        step made without a listing) the one there now."""
        if version is not None and version.startswith("g:"):
            return int(version[2:])
        return self._file(src)

    def rename(self, src: Parts, dst: Parts, version: str | None = None) -> None:
        """Move a file; never replaces an existing destination, moves only ``version``."""
        generation = self._pinned(src, version)
        self._keep_folder(src[:-1])  # before the source can leave its folder
        try:
            moved = self._requests.move(self._name(src), generation, self._name(dst))
        except gexc.PreconditionFailed:
            raise self._refusal(src, dst) from None
        if moved is not None:
            return
        target_generation = self._copy(src, generation, dst)
        try:
            self._requests.delete(self._name(src), generation)
        except FileNotFoundError:
            return  # someone else removed the source meanwhile: the move's end state holds
        except gexc.PreconditionFailed:
            # The source was rewritten after we copied it: take our copy back, keep theirs.
            with contextlib.suppress(OSError, gexc.PreconditionFailed):
                self._requests.delete(self._name(dst), target_generation)
            raise SourceChangedError(f"{_show(src)} changed while it was moved") from None

    def copy(self, src: Parts, dst: Parts, staging: Parts, version: str | None = None) -> None:
        """Copy a file server-side; ``dst`` appears whole or not at all (no staging needed)."""
        self._copy(src, self._pinned(src, version), dst)

    def write(self, dst: Parts, content: bytes, staging: Parts) -> None:
        try:
            self._requests.create(self._name(dst), content)
        except gexc.PreconditionFailed:
            raise FileExistsError(errno.EEXIST, "appeared meanwhile", _show(dst)) from None

    def _copy(self, src: Parts, generation: int, dst: Parts) -> int:
        """Copy that generation of ``src`` to a new ``dst``: the copy's generation."""
        try:
            return self._requests.copy(self._name(src), generation, self._name(dst))
        except gexc.PreconditionFailed:
            raise self._refusal(src, dst) from None

    def _refusal(self, src: Parts, dst: Parts) -> OSError | StepConflictError:
        """Which precondition of a move or copy failed: the target exists, or the source is
        gone or not the generation the step acts on."""
        if self._requests.stat(self._name(dst)) is not None:
            return FileExistsError(errno.EEXIST, "appeared meanwhile", _show(dst))
        if self._requests.stat(self._name(src)) is None:
            return FileNotFoundError(errno.ENOENT, "no such file", _show(src))
        return SourceChangedError(f"{_show(src)} changed since the plan was checked")
