"""File operations confined to one case folder, re-checked at the moment of use.

Every call walks from the case folder's descriptor one name at a time with ``O_NOFOLLOW``, so a
symbolic link (or a foreign mount) swapped in after the simulation is refused, never followed.
On gcsfuse, where a folder is its name, the folders walked are kept open for up to a second
(``folder_cache`` says why that is safe there and only there).
Renames never replace: ``renameat2(RENAME_NOREPLACE)`` where the filesystem supports it, a
re-check right before a plain rename where it does not (FUSE filesystems such as gcsfuse).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.core.folder_cache import FolderCache, names_are_folders
from fileops_daemon.core.steps import Parts
from fileops_daemon.core.tree import Kind

__all__ = ["CaseFS", "FolderMissingError", "SourceChangedError", "StepConflictError"]

_RENAME_NOREPLACE = 1
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in opens at once (and is then refused) instead of hanging us.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_STAGE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class StepConflictError(PlanError):
    """The tree is not what the step expects (changed by someone else, or unsafe)."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.TREE_CHANGED) -> None:
        super().__init__(code, message)


class FolderMissingError(StepConflictError):
    """A folder on the way to the item does not exist (any more)."""


class SourceChangedError(StepConflictError):
    """The step's source is not the version the simulation checked (``Step.version``); the
    step did nothing. ``precondition_failed`` when its operation had an ``expect``."""


def check_stamp(
    parts: Parts, info: os.stat_result, version: str | None, digest: Callable[[], str]
) -> None:
    """Refuse a file that is not the one stamped ``m:<size>:<mtime ns>[:<sha256>]`` (a
    filesystem's ``Step.version``; other volumes' versions are not for it)."""
    if not version or not version.startswith("m:"):
        return
    _, size, mtime, *sha = version.split(":")
    if info.st_size != int(size) or info.st_mtime_ns != int(mtime) or (sha and digest() != sha[0]):
        raise SourceChangedError(f"{_show(parts)} changed since the plan was checked")


def _load_renameat2() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    function = getattr(libc, "renameat2", None)
    if function is None:
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2()


def _show(parts: Parts) -> str:
    return "/".join(parts)


class CaseFS:
    """Confined operations below one case folder (paths are tuples of names below it)."""

    def __init__(self, case_dir: str, *, keep_folders: bool | None = None) -> None:
        """``keep_folders``: keep folder descriptors a while (default: on gcsfuse only)."""
        self.case_dir = case_dir
        self._root = os.open(case_dir, _DIR_FLAGS)
        self._device = os.fstat(self._root).st_dev
        if keep_folders is None:
            keep_folders = names_are_folders(self._device)
        self._folders = FolderCache(keep_folders)
        # RENAME_NOREPLACE: None until the first rename finds out (see _rename_at).
        self._noreplace: bool | None = None if _renameat2 is not None else False
        self._probe = threading.Lock()
        self._made: set[Parts] = set()  # our own folders known to exist (makedirs)

    def close(self) -> None:
        self._folders.close()
        if self._root >= 0:
            os.close(self._root)
            self._root = -1

    def __enter__(self) -> CaseFS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- walking --------------------------------------------------------------------------------

    def open_folder(self, parts: Parts) -> int:
        """A descriptor of the folder at ``parts``; refuses links and mounts on the way.

        Returns the case root's own descriptor for ``()``, and on gcsfuse one kept for up to a
        second (see ``folder_cache``); release with ``close_folder`` either way.
        """
        if not parts:
            return self._root
        kept = self._folders.acquire(parts)
        if kept is not None:
            return kept
        if not self._folders.enabled:
            return self._walk(parts)
        with self._folders.walking(parts):  # one walk per folder, however many workers wait
            kept = self._folders.acquire(parts)
            return kept if kept is not None else self._walk(parts)

    def _walk(self, parts: Parts) -> int:
        """Open ``parts`` one name at a time from the deepest folder kept on the way."""
        start, fd = self._folders.acquire_nearest(parts[:-1])
        if fd is None:
            start, fd = 0, self._root
        for depth in range(start + 1, len(parts) + 1):
            name = parts[depth - 1]
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                # O_PATH|O_NOFOLLOW on a link gives ENOTDIR, not ELOOP: say which it was.
                link = exc.errno == errno.ENOTDIR and _is_link(name, fd)
                self.close_folder(fd)
                if link:
                    raise StepConflictError(
                        f"{_show(parts[:depth])} became a symbolic link", ErrorCode.SYMLINK_REFUSED
                    ) from exc
                raise _walk_error(exc, parts[:depth]) from exc
            self.close_folder(fd)
            fd = child
            if os.fstat(fd).st_dev != self._device:
                os.close(fd)
                raise StepConflictError(
                    f"{_show(parts[:depth])} is another filesystem", ErrorCode.MOUNT_CROSSING
                )
            self._folders.keep(parts[:depth], fd)
        return fd

    def close_folder(self, fd: int) -> None:
        if fd != self._root and not self._folders.release(fd):
            os.close(fd)

    @contextmanager
    def folder(self, parts: Parts) -> Iterator[int]:
        fd = self.open_folder(parts)
        try:
            yield fd
        finally:
            self.close_folder(fd)

    def kind(self, parts: Parts) -> Kind | None:
        """What stands at ``parts`` now (links are reported, not followed); None if nothing."""
        try:
            with self.folder(parts[:-1]) as fd:
                try:
                    mode = os.lstat(parts[-1], dir_fd=fd).st_mode
                except FileNotFoundError:
                    return None
        except FolderMissingError:
            return None
        if stat.S_ISLNK(mode):
            return Kind.SYMLINK
        if stat.S_ISDIR(mode):
            return Kind.DIR
        if stat.S_ISREG(mode):
            return Kind.FILE
        return Kind.OTHER

    def sha256(self, parts: Parts) -> str:
        digest = hashlib.sha256()
        with self.folder(parts[:-1]) as fd:
            file_fd = os.open(parts[-1], _READ_FLAGS, dir_fd=fd)
        try:
            if not stat.S_ISREG(os.fstat(file_fd).st_mode):
                raise StepConflictError(f"{_show(parts)} is no longer a plain file")
            while chunk := os.read(file_fd, 1 << 20):
                digest.update(chunk)
        finally:
            os.close(file_fd)
        return digest.hexdigest()

    # -- changes --------------------------------------------------------------------------------

    def mkdir(self, parts: Parts) -> None:
        with self.folder(parts[:-1]) as fd:
            os.mkdir(parts[-1], 0o755, dir_fd=fd)

    def makedirs(self, parts: Parts) -> None:
        """Create the daemon's own folders (trash, staging) as needed."""
        for depth in range(1, len(parts) + 1):
            if parts[:depth] in self._made:
                continue
            try:
                self.mkdir(parts[:depth])
            except FileExistsError:
                if self.kind(parts[:depth]) is not Kind.DIR:
                    raise StepConflictError(f"{_show(parts[:depth])} is not a folder") from None
            self._made.add(parts[:depth])

    def rmdir(self, parts: Parts) -> None:
        try:
            with self.folder(parts[:-1]) as fd:
                os.rmdir(parts[-1], dir_fd=fd)
        finally:
            self._folders.drop(parts)  # gone or not, the next call walks to it again

    def unlink(self, parts: Parts) -> None:
        with self.folder(parts[:-1]) as fd:
            os.unlink(parts[-1], dir_fd=fd)

    def rename(self, src: Parts, dst: Parts, version: str | None = None) -> None:
        """Rename a file; never replaces an existing destination, and moves only the
        ``version`` stamped by the simulation (re-checked right before)."""
        src_fd = self.open_folder(src[:-1])
        try:
            dst_fd = src_fd if dst[:-1] == src[:-1] else self.open_folder(dst[:-1])
            try:
                self._rename_at(src_fd, src, dst_fd, dst, version)
            finally:
                if dst_fd != src_fd:
                    self.close_folder(dst_fd)
        finally:
            self.close_folder(src_fd)

    def _rename_at(
        self, src_fd: int, src: Parts, dst_fd: int, dst: Parts, version: str | None = None
    ) -> None:
        info = os.lstat(src[-1], dir_fd=src_fd)
        if not stat.S_ISREG(info.st_mode):
            raise StepConflictError(f"{_show(src)} is no longer a plain file")
        check_stamp(src, info, version, lambda: self._digest_at(src_fd, src))
        if self._noreplace is None:
            # The first rename finds out alone whether the filesystem has RENAME_NOREPLACE: on
            # FUSE each refused try still costs the kernel's lookups (GCS requests on gcsfuse).
            with self._probe:
                if self._noreplace is None:
                    self._noreplace = self._rename_noreplace(src_fd, src, dst_fd, dst)
                    if self._noreplace:
                        return
        if self._noreplace and self._rename_noreplace(src_fd, src, dst_fd, dst):
            return
        try:
            os.lstat(dst[-1], dir_fd=dst_fd)
        except FileNotFoundError:
            os.rename(src[-1], dst[-1], src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            return
        raise StepConflictError(f"{_show(dst)} appeared meanwhile")

    def _rename_noreplace(self, src_fd: int, src: Parts, dst_fd: int, dst: Parts) -> bool:
        """True when renamed; False when the filesystem has no RENAME_NOREPLACE."""
        result = _renameat2(
            src_fd, os.fsencode(src[-1]), dst_fd, os.fsencode(dst[-1]), _RENAME_NOREPLACE
        )
        if result == 0:
            return True
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise StepConflictError(f"{_show(dst)} appeared meanwhile")
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), _show(src))
        return False

    def _digest_at(self, dir_fd: int, parts: Parts) -> str:
        digest = hashlib.sha256()
        fd = os.open(parts[-1], _READ_FLAGS, dir_fd=dir_fd)
        try:
            while chunk := os.read(fd, 1 << 20):
                digest.update(chunk)
        finally:
            os.close(fd)
        return digest.hexdigest()

    def copy(self, src: Parts, dst: Parts, staging: Parts, version: str | None = None) -> None:
        """Copy a file through a staging name, so ``dst`` appears whole or not at all; only
        the ``version`` stamped by the simulation."""
        with self.folder(src[:-1]) as src_dir:
            try:
                src_fd = os.open(src[-1], _READ_FLAGS, dir_fd=src_dir)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise StepConflictError(
                        f"{_show(src)} became a symbolic link", ErrorCode.SYMLINK_REFUSED
                    ) from exc
                raise
        try:
            info = os.fstat(src_fd)
            if not stat.S_ISREG(info.st_mode):
                raise StepConflictError(f"{_show(src)} is no longer a plain file")
            check_stamp(src, info, version, lambda: _digest_fd(src_fd))
            self._stage(staging, lambda out: _copy_fd(src_fd, out, info.st_size), info.st_mode)
        finally:
            os.close(src_fd)
        self._publish(staging, dst)

    def write(self, dst: Parts, content: bytes, staging: Parts) -> None:
        self._stage(staging, lambda out: _write_all(out, content), 0o644)
        self._publish(staging, dst)

    def _publish(self, staging: Parts, dst: Parts) -> None:
        """Give the staged file its final name; on a conflict, drop the staged copy."""
        try:
            self.rename(staging, dst)
        except StepConflictError:
            with contextlib.suppress(OSError):
                self.unlink(staging)
            raise

    def _stage(self, staging: Parts, fill: Callable[[int], None], mode: int) -> None:
        self.makedirs(staging[:-1])
        with self.folder(staging[:-1]) as fd:
            # The staging name is ours: whatever stands there (our leftover after a crash, or a
            # planted hard link or FIFO) is removed, and a new file is made. O_EXCL creates a
            # new regular file or fails: it never writes into an existing inode or opens a FIFO.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staging[-1], dir_fd=fd)
            # Never the set-user/group-ID or sticky bits: a copy made as root must not turn a
            # user's file into a root-owned setuid program.
            permissions = (stat.S_IMODE(mode) & 0o777) or 0o644
            try:
                out = os.open(staging[-1], _STAGE_FLAGS, permissions, dir_fd=fd)
            except FileExistsError as exc:
                raise StepConflictError(f"{_show(staging)} appeared meanwhile") from exc
            try:
                fill(out)
                os.fsync(out)  # content is durable before its name appears
            finally:
                os.close(out)


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def _walk_error(exc: OSError, parts: Parts) -> Exception:
    where = _show(parts)
    if exc.errno == errno.ELOOP:
        return StepConflictError(f"{where} became a symbolic link", ErrorCode.SYMLINK_REFUSED)
    if exc.errno == errno.ENOTDIR:
        return StepConflictError(f"{where} is no longer a folder")
    if exc.errno == errno.ENOENT:
        return FolderMissingError(f"the folder {where} is gone")
    return exc


def _digest_fd(fd: int) -> str:
    digest = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _copy_fd(src: int, dst: int, size: int) -> None:
    offset = 0
    try:
        while offset < size:
            copied = os.copy_file_range(src, dst, size - offset)
            if copied == 0:
                break
            offset += copied
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
    os.lseek(src, offset, os.SEEK_SET)
    os.lseek(dst, offset, os.SEEK_SET)
    while chunk := os.read(src, 1 << 20):
        _write_all(dst, chunk)
