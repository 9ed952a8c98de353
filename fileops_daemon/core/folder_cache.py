"""Folder descriptors kept open for one run, on filesystems where a folder *is* its name.

Why this is safe only there. A descriptor of a folder on a local filesystem follows the folder's
inode: if another writer renames ``case/inbox`` to ``/tmp/elsewhere``, every later call through
a kept descriptor lands in ``/tmp/elsewhere``, outside the case folder. So on local (and any
unknown) filesystems CaseFS keeps nothing and walks from the case folder at every call; that
walk is cheap there.

On gcsfuse a folder inode stands for an object-name prefix (``case/inbox/``) and keeps it for
its whole life: the kernel never learns of other writers' changes except by asking gcsfuse
about a name, and gcsfuse answers for names. Through a kept descriptor of ``case/inbox``:

- **Renamed by another writer** (a folder rename on a flat bucket copies and deletes each object
  under the prefix, and this mount refuses folder renames): the descriptor still means
  ``case/inbox/``. The step's own re-check of the item (``lstat`` of the source, of the
  destination) asks GCS about ``case/inbox/NAME`` and finds what is there now: a source that left
  with its folder is "gone" (a conflict); a destination folder that was moved away is made
  again by the rename, at the plan's own path inside the case folder, and nothing is replaced
  (the destination's absence is re-checked, uncached, right before).
- **Swapped for a symbolic link** (the prefix emptied and a ``case/inbox`` link object made):
  calls through the descriptor name objects under ``case/inbox/``; gcsfuse resolves no link
  on the way, so nothing is followed and nothing outside the case folder is touched.
- **A foreign filesystem mounted on it**: the descriptor is of the gcsfuse folder under the
  mount, so calls still go to gcsfuse, never into the mount.

What changes against a walk at every call: a folder deleted or swapped for a link by another
writer is re-made (at the plan's path) instead of refused. Our own ``rmdir`` drops the folder
(and anything below it) from the cache, so a later step walks again.

Descriptors are closed only when the run ends: a worker thread may be using one while another
drops it, and closing it then could hand its number to an unrelated file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fileops_daemon.core.steps import Parts

__all__ = ["FolderCache", "names_are_folders"]

#: Filesystem types whose folder inodes are bound to names (see above).
_NAME_BOUND_TYPES = frozenset({"fuse.gcsfuse"})
#: At most this many folders are kept per run (the default soft limit on descriptors is 1,024).
MAX_KEPT = 256


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


class FolderCache:
    """Descriptors of folders below the case folder, by path; shared by the run's threads."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._kept: dict[Parts, int] = {}
        self._owned: set[int] = set()  # every descriptor we keep or dropped: closed at the end
        self._walks: dict[Parts, threading.Lock] = {}
        self._lock = threading.Lock()

    @contextmanager
    def walking(self, parts: Parts) -> Iterator[None]:
        """Held while one thread opens ``parts``: the others then find it kept."""
        with self._lock:
            walk = self._walks.setdefault(parts, threading.Lock())
        with walk:
            yield

    def get(self, parts: Parts) -> int | None:
        if not self.enabled:
            return None
        with self._lock:
            return self._kept.get(parts)

    def nearest(self, parts: Parts) -> tuple[int, int | None]:
        """The depth and descriptor of the deepest kept folder on the way to ``parts``."""
        if not self.enabled:
            return 0, None
        with self._lock:
            for depth in range(len(parts), 0, -1):
                fd = self._kept.get(parts[:depth])
                if fd is not None:
                    return depth, fd
        return 0, None

    def keep(self, parts: Parts, fd: int) -> bool:
        """Keep ``fd`` as the folder at ``parts``; False if not kept (the caller closes it)."""
        if not self.enabled:
            return False
        with self._lock:
            if parts in self._kept or len(self._owned) >= MAX_KEPT:
                return False
            self._kept[parts] = fd
            self._owned.add(fd)
            return True

    def owns(self, fd: int) -> bool:
        if not self.enabled:
            return False
        with self._lock:
            return fd in self._owned

    def drop(self, parts: Parts) -> None:
        """Forget the folder at ``parts`` and everything below it (after we removed it)."""
        if not self.enabled:
            return
        with self._lock:
            for kept in [p for p in self._kept if p[: len(parts)] == parts]:
                del self._kept[kept]  # the descriptor stays open (owned) until close()

    def close(self) -> None:
        with self._lock:
            owned, self._owned = self._owned, set()
            self._kept.clear()
        for fd in owned:
            os.close(fd)
