"""Folder descriptors kept open for up to a second, on filesystems where a folder *is* its name.

Walking from the case folder one name at a time at every call costs a lookup of each folder on
the way, at every step (on gcsfuse with its cache off, two GCS requests per folder). Keeping the
descriptors of the folders walked to saves those, but is safe only where a descriptor cannot
come to mean a different place.

On a local filesystem it can: a descriptor follows the folder's inode, so if another writer
renames ``case/inbox`` to ``/tmp/elsewhere``, every call through a kept descriptor lands in
``/tmp/elsewhere``, outside the case folder. So there (and on any filesystem not known to be
gcsfuse) CaseFS keeps nothing and walks at every call; it is cheap there.

On gcsfuse a folder inode stands for an object-name prefix (``case/inbox/``) for its whole
life, and the mount refuses folder renames (``rename_dir_limit=0``). Through a kept descriptor
of ``case/inbox`` every call names objects ``case/inbox/...``, whatever another writer does:

- **Moved away** (copied and deleted object by object by another tool): the step's own
  re-check of its item asks GCS about ``case/inbox/NAME``. A source that left with its folder
  is gone (a conflict); a destination folder that was removed is made again by the rename, at
  the plan's own path inside the case folder, and nothing is replaced (the destination's
  absence is asked of GCS right before).
- **Swapped for a symbolic link** (the prefix emptied and a ``case/inbox`` link object made):
  calls name objects under ``case/inbox/``; gcsfuse follows no link on the way, so nothing is
  followed and nothing outside the case folder is touched.
- **A foreign filesystem mounted on it**: the descriptor is of the gcsfuse folder under the
  mount, so calls still go to gcsfuse, never into the mount.

What a kept descriptor changes against a walk is that a folder removed, or swapped for a link,
by another writer is made again at the plan's path (a walk refuses it). That window is bounded:
a kept folder is walked to again after ``MAX_AGE_SECONDS`` (one second), the time the production
mount's own cache of what exists (``metadata_cache_ttl_secs=1``) would let a walk see the old
folder anyway. Our own ``rmdir`` forgets the folder and what is below it at once.

A descriptor dropped or expired while another thread still uses it is closed by its last user:
closing it earlier could hand its number to an unrelated file.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fileops_daemon.core.steps import Parts

__all__ = ["FolderCache", "names_are_folders"]

#: Filesystem types whose folder inodes are bound to names (see above).
_NAME_BOUND_TYPES = frozenset({"fuse.gcsfuse"})
#: At most this many folders are kept per run (the default soft limit on descriptors is 1,024).
MAX_KEPT = 256
#: A kept folder is walked to again after this long (the production mount's metadata cache TTL).
MAX_AGE_SECONDS = 1.0


def names_are_folders(device: int, mountinfo: Path = Path("/proc/self/mountinfo")) -> bool:
    """True when the filesystem with this ``st_dev`` is a gcsfuse mount."""
    wanted = f"{os.major(device)}:{os.minor(device)}"
    try:
        lines = mountinfo.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) < 3 or fields[2] != wanted or "-" not in fields:
            continue
        after = fields[fields.index("-") + 1 :]
        if after and after[0] in _NAME_BOUND_TYPES:
            return True
    return False


@dataclass
class _Kept:
    fd: int
    since: float  # when it was walked to (time.monotonic)
    users: int  # callers holding it now (between open_folder and close_folder)
    retired: bool = False  # dropped or expired: closed once its last user is done


class FolderCache:
    """Descriptors of folders below the case folder, by path; shared by the run's threads.

    A kept folder is walked to again after ``max_age`` seconds: what another writer did to it
    is then seen within that time, as the mount's own one-second cache of what exists would.
    """

    def __init__(self, enabled: bool, max_age: float | None = None) -> None:
        self.enabled = enabled
        self.max_age = MAX_AGE_SECONDS if max_age is None else max_age
        self._kept: dict[Parts, _Kept] = {}
        self._by_fd: dict[int, _Kept] = {}  # kept and retired ones still in use
        self._walks: dict[Parts, threading.Lock] = {}
        self._lock = threading.Lock()

    @contextmanager
    def walking(self, parts: Parts) -> Iterator[None]:
        """Held while one thread opens ``parts``: the others then find it kept."""
        with self._lock:
            walk = self._walks.setdefault(parts, threading.Lock())
        with walk:
            yield

    def acquire(self, parts: Parts) -> int | None:
        """The kept folder at ``parts`` if it is fresh (release it with ``release``)."""
        if not self.enabled:
            return None
        with self._lock:
            return self._acquire(parts, time.monotonic())

    def acquire_nearest(self, parts: Parts) -> tuple[int, int | None]:
        """The depth and descriptor of the deepest fresh kept folder on the way to ``parts``."""
        if not self.enabled:
            return 0, None
        with self._lock:
            now = time.monotonic()
            for depth in range(len(parts), 0, -1):
                fd = self._acquire(parts[:depth], now)
                if fd is not None:
                    return depth, fd
        return 0, None

    def _acquire(self, parts: Parts, now: float) -> int | None:
        kept = self._kept.get(parts)
        if kept is None:
            return None
        if now - kept.since > self.max_age:
            self._retire(parts)
            return None
        kept.users += 1
        return kept.fd

    def keep(self, parts: Parts, fd: int) -> bool:
        """Keep ``fd``, just opened by the caller, as the folder at ``parts``; the caller holds
        it (``release`` when done). False if not kept: then it stays the caller's to close."""
        if not self.enabled:
            return False
        with self._lock:
            if parts in self._kept or len(self._by_fd) >= MAX_KEPT:
                return False
            kept = _Kept(fd, time.monotonic(), users=1)
            self._kept[parts] = kept
            self._by_fd[fd] = kept
            return True

    def release(self, fd: int) -> bool:
        """Done with ``fd``; False if the cache does not own it (the caller closes it)."""
        if not self.enabled:
            return False
        with self._lock:
            kept = self._by_fd.get(fd)
            if kept is None:
                return False
            kept.users -= 1
            if kept.retired and kept.users == 0:
                self._close(kept)
            return True

    def drop(self, parts: Parts) -> None:
        """Forget the folder at ``parts`` and everything below it (after we removed it)."""
        if not self.enabled:
            return
        with self._lock:
            for below in [p for p in self._kept if p[: len(parts)] == parts]:
                self._retire(below)

    def _retire(self, parts: Parts) -> None:
        kept = self._kept.pop(parts)
        kept.retired = True
        if kept.users == 0:  # else its last user closes it: another thread may be using it
            self._close(kept)

    def _close(self, kept: _Kept) -> None:
        del self._by_fd[kept.fd]
        os.close(kept.fd)

    def close(self) -> None:
        """The run is over: close every descriptor."""
        with self._lock:
            owned, self._by_fd = self._by_fd, {}
            self._kept.clear()
        for kept in owned.values():
            os.close(kept.fd)
