"""Where the case folders live, and the three things the core does there.

The core reads a case folder to simulate a plan (``TreeSource``), changes it one step at a
time (``CaseFiles``), and tidies its own work folders afterwards. ``LocalVolume`` does all three
on a local or mounted folder (gcsfuse); the daemon and the CLI can pass another volume, such as
the bucket reached through the GCS JSON API (``fileops_daemon.gcs``), behind the same plan
contract, confinement, journal, resume, rollback and undo.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import Any, Protocol

from fileops_daemon.core.fsops import CaseFS
from fileops_daemon.core.steps import Parts
from fileops_daemon.core.tree import Kind, PosixTreeSource
from fileops_daemon.core.workdirs import remove_empty_work_dirs

__all__ = ["CaseFiles", "Listed", "LocalVolume", "TreeSource", "Volume"]

#: One item of a folder listing: its name, its kind, where it lives, its size when known, and
#: its version when the listing names one (an object's generation: a step then acts only on
#: that version, at no extra request).
Listed = tuple[str, Kind, str, int | None, str | None]


class TreeSource(Protocol):
    """Reads a case folder for the simulation; never changes it. ``origin`` is the
    volume's own address of an item (a path, an object name)."""

    def list(self, origin: str) -> Iterator[Listed]:
        """The items directly inside the folder at ``origin``."""

    def size(self, origin: str) -> int: ...

    def sha256(self, origin: str, version: str | None = None) -> str:
        """Of that ``version`` (the listing's) where one is given."""

    def stamp(self, origin: str, sha256: str | None) -> str | None:
        """A version of a file whose ``expect`` the plan checked, when its listing named none:
        what a step must find there still (None: the volume pins nothing more)."""


class CaseFiles(Protocol):
    """The changes a step makes below one case folder; each re-checks the tree as it acts.

    Paths are tuples of names below the case folder. Raises ``StepConflictError`` when the tree
    is not what the step expects, ``FileExistsError``/``FileNotFoundError``/``OSError`` as a
    filesystem would (``step_runner`` turns them into conflicts), and an ``OSError`` with a
    transient errno for a passing fault (retried).
    """

    def kind(self, parts: Parts) -> Kind | None: ...

    def sha256(self, parts: Parts) -> str: ...

    def mkdir(self, parts: Parts) -> None: ...

    def makedirs(self, parts: Parts) -> None: ...

    def rmdir(self, parts: Parts) -> None: ...

    def unlink(self, parts: Parts) -> None: ...

    def rename(self, src: Parts, dst: Parts, version: str | None = None) -> None:
        """Never replaces an existing destination. ``version`` (``Step.version``): only that
        version of ``src`` moves; another one there is a ``SourceChangedError``, with
        nothing done."""

    def copy(self, src: Parts, dst: Parts, staging: Parts, version: str | None = None) -> None:
        """``dst`` appears whole or not at all; ``version`` as for ``rename``."""

    def write(self, dst: Parts, content: bytes, staging: Parts) -> None: ...

    def close(self) -> None: ...


class Volume(Protocol):
    """The projects root: finds case folders, reads and changes them."""

    #: How the volume is named in messages and the journal (a path, ``gs://bucket``).
    root: str

    def locate_case(self, case_name: str) -> str:
        """The case folder's address (``case_dir``), found by NFC name; PlanError when it is
        missing, ambiguous, a link or not a folder."""

    def tree_source(self, case_dir: str) -> TreeSource: ...

    def open_case(self, case_dir: str) -> CaseFiles:
        """OSError when the case folder vanished or became a link."""

    def tidy_work_dirs(self, case_dir: str, plan_id: str, *, keep_trash: bool) -> None:
        """Drop the plan's empty work folders (its trash too unless ``keep_trash``)."""

    def source_listing(self, sources: list[str]) -> list[list[Any]]:
        """Each path (``case/...``) and everything below it as (path, kind, size, version),
        to tell later whether any of it changed; links are listed, never followed."""


class LocalVolume:
    """A folder on this machine: a local disk or a gcsfuse mount."""

    def __init__(self, root: str) -> None:
        self.root = root

    def locate_case(self, case_name: str) -> str:
        from fileops_daemon.core.simulate import locate_case  # simulate imports this module

        return locate_case(self.root, case_name)

    def tree_source(self, case_dir: str) -> TreeSource:
        return PosixTreeSource(case_dir)

    def open_case(self, case_dir: str) -> CaseFiles:
        return CaseFS(case_dir)

    def tidy_work_dirs(self, case_dir: str, plan_id: str, *, keep_trash: bool) -> None:
        remove_empty_work_dirs(case_dir, plan_id, keep_trash=keep_trash)

    def source_listing(self, sources: list[str]) -> list[list[Any]]:
        """The version of a file is its mtime in nanoseconds."""
        listing: list[list[Any]] = []

        def add(shown: str, path: str) -> None:
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                listing.append([shown, "missing", 0, 0])
                return
            kind = "dir" if stat.S_ISDIR(info.st_mode) else "file"
            size = info.st_size if kind == "file" else 0
            listing.append([shown, kind, size, info.st_mtime_ns])
            if kind == "dir":
                with os.scandir(path) as entries:
                    for entry in sorted(entries, key=lambda e: e.name):
                        add(f"{shown}/{entry.name}", entry.path)

        for source in sources:
            add(source, os.path.join(self.root, *source.split("/")))
        return listing
