"""A virtual view of one case folder: the disk as listed lazily, plus the plan's changes so far.

Nodes are looked up by NFC name, so a plan's spelling finds a name the disk holds in another
normalisation form; two disk names with one NFC form make the name ambiguous. Symbolic links,
special files and foreign mounts are kept as such so the simulation can refuse them.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from enum import StrEnum
from typing import TYPE_CHECKING

from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.core.paths import nfc

if TYPE_CHECKING:
    from fileops_daemon.core.volume import Listed, TreeSource

__all__ = ["Kind", "Node", "OverBudgetError", "PosixTreeSource", "VirtualTree", "file_sha256"]


class Kind(StrEnum):
    FILE = "file"
    DIR = "folder"
    SYMLINK = "symlink"
    MOUNT = "mount"
    OTHER = "special file"


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


class OverBudgetError(Exception):
    """A walk met more items than the steps it may still expand into (nothing more listed)."""


class Node:
    """One file or folder as the plan sees it at this point of the simulation."""

    __slots__ = (
        "_children",
        "_sha256",
        "_size",
        "ambiguous",
        "kind",
        "name",
        "origin",
        "parent",
        "source",
        "version",
    )

    def __init__(
        self,
        kind: Kind,
        name: str,
        parent: Node | None,
        origin: str | None,
        *,
        size: int | None = None,
        sha256: str | None = None,
        source: TreeSource | None = None,
        version: str | None = None,
    ) -> None:
        self.kind = kind
        self.name = name  # the spelling on disk (or the plan's NFC spelling for new items)
        self.parent = parent
        self.origin = origin  # where this node's content lives on disk before the plan runs
        self.source = source  # what reads ``origin`` (None: a local path)
        # What a step acting on this item must find at its place (``Step.version``): the
        # listing's version, or a stamp taken when an ``expect`` was checked. "" once the plan
        # moved or made the item: then nothing is pinned.
        self.version = version
        self._size = size
        self._sha256 = sha256
        # NFC name -> child; None until listed. Items the plan creates start out listed.
        self._children: dict[str, Node] | None = None if origin is not None else {}
        self.ambiguous: set[str] = set()

    @property
    def parts(self) -> tuple[str, ...]:
        """Path below the case folder, in on-disk spelling."""
        names: list[str] = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            names.append(node.name)
            node = node.parent
        return tuple(reversed(names))

    @property
    def size(self) -> int:
        if self._size is None:
            if self.origin is None:
                self._size = 0
            elif self.source is not None:
                self._size = self.source.size(self.origin)
            else:
                self._size = os.lstat(self.origin).st_size
        return self._size

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            if self.origin is None:
                self._sha256 = hashlib.sha256().hexdigest()
            elif self.source is not None:
                self._sha256 = self.source.sha256(self.origin, self.version or None)
            else:
                self._sha256 = file_sha256(self.origin)
        return self._sha256

    def pin(self) -> str | None:
        """The version a step moving this item acts on; its place holds another one after."""
        version = self.version or None
        self.version = ""
        return version

    def is_within(self, other: Node) -> bool:
        """True when this node is ``other`` or lies below it."""
        node: Node | None = self
        while node is not None:
            if node is other:
                return True
            node = node.parent
        return False


class PosixTreeSource:
    """A case folder on this machine (or a mount) as the simulation reads it."""

    def __init__(self, case_dir: str) -> None:
        self.device = os.lstat(case_dir).st_dev

    def list(self, origin: str) -> Iterator[Listed]:
        with os.scandir(origin) as entries:
            for entry in entries:
                yield entry.name, self._kind(entry), entry.path, None, None

    def size(self, origin: str) -> int:
        return os.lstat(origin).st_size

    def sha256(self, origin: str, version: str | None = None) -> str:
        return file_sha256(origin)

    def stamp(self, origin: str, sha256: str | None) -> str | None:
        """``m:<size>:<mtime ns>[:<sha256>]``: a step re-checks these right before it acts."""
        info = os.lstat(origin)
        return f"m:{info.st_size}:{info.st_mtime_ns}" + (f":{sha256}" if sha256 else "")

    def _kind(self, entry: os.DirEntry[str]) -> Kind:
        if entry.is_symlink():
            return Kind.SYMLINK
        if entry.is_dir(follow_symlinks=False):
            if entry.stat(follow_symlinks=False).st_dev != self.device:
                return Kind.MOUNT
            return Kind.DIR
        if entry.is_file(follow_symlinks=False):
            return Kind.FILE
        mode = entry.stat(follow_symlinks=False).st_mode
        return Kind.FILE if stat.S_ISREG(mode) else Kind.OTHER


class VirtualTree:
    """The case folder as the simulation sees it; reads the volume, never writes it."""

    def __init__(self, case_dir: str, source: TreeSource | None = None) -> None:
        # A local source reads paths itself (nodes keep ``source`` None: one slot less to set).
        self.pin_sources = False  # see stamp_source
        self._source = source if source is not None else PosixTreeSource(case_dir)
        self._node_source = source
        self.root = Node(Kind.DIR, "", None, case_dir, source=source)

    # -- reading the volume -------------------------------------------------------------------

    def children(self, node: Node, limit: int | None = None) -> dict[str, Node]:
        """The items in ``node``; OverBudgetError once a listing yields more than ``limit``
        (then it is dropped, and no more of it is read)."""
        if node._children is None:
            node._children = self._list(node, limit)
        return node._children

    def _list(self, node: Node, limit: int | None) -> dict[str, Node]:
        assert node.origin is not None
        listing: dict[str, Node] = {}
        source = self._node_source
        for name, kind, origin, size, version in self._source.list(node.origin):
            key = nfc(name)
            if key in listing:
                node.ambiguous.add(key)
            listing[key] = Node(kind, name, node, origin, size=size, source=source, version=version)
            if limit is not None and len(listing) > limit:
                raise OverBudgetError
        return listing

    def stamp(self, node: Node, sha256: str | None) -> None:
        """Pin a file whose ``expect`` was checked, where its listing named no version."""
        if node.version is None and node.origin is not None:
            node.version = self._source.stamp(node.origin, sha256)

    def stamp_source(self, node: Node) -> None:
        """With ``pin_sources`` (a plan a person approved as it was shown), pin every file a
        step moves or copies, so that a step after a crash and a resume still acts only on
        what was shown, even without an ``expect``."""
        if self.pin_sources and node.kind is Kind.FILE:
            self.stamp(node, None)

    # -- lookups --------------------------------------------------------------------------------

    def child(self, parent: Node, name: str, *, raw: object, operation: int) -> Node | None:
        """The child called ``name`` (any normalisation form), refusing ambiguous names."""
        key = nfc(name)
        found = self.children(parent).get(key)
        if key in parent.ambiguous:
            raise PlanError(
                ErrorCode.PATH_AMBIGUOUS,
                f"two names in {'/'.join(parent.parts) or 'the case folder'} read as {key!r} "
                "after Unicode normalisation; rename one first",
                operation=operation,
                path=str(raw),
            )
        return found

    def folder(self, parts: tuple[str, ...], *, raw: object, operation: int) -> Node | None:
        """Walk folders from the case root; None when one is missing."""
        node = self.root
        for name in parts:
            child = self.child(node, name, raw=raw, operation=operation)
            if child is None:
                return None
            refuse_unsafe(child, raw=raw, operation=operation)
            if child.kind is not Kind.DIR:
                raise PlanError(
                    ErrorCode.TYPE_CONFLICT,
                    f"{'/'.join(child.parts)} is a file, not a folder",
                    operation=operation,
                    path=str(raw),
                )
            node = child
        return node

    def lookup(self, parts: tuple[str, ...], *, raw: object, operation: int) -> Node | None:
        """The node at ``parts`` (file or folder), or None when it or a parent is missing."""
        parent = self.folder(parts[:-1], raw=raw, operation=operation)
        if parent is None:
            return None
        node = self.child(parent, parts[-1], raw=raw, operation=operation)
        if node is not None:
            refuse_unsafe(node, raw=raw, operation=operation)
        return node

    # -- changes --------------------------------------------------------------------------------

    def attach(self, node: Node, parent: Node, name: str) -> None:
        self.children(parent)[nfc(name)] = node
        node.parent = parent
        node.name = name

    def detach(self, node: Node) -> None:
        assert node.parent is not None
        siblings = self.children(node.parent)
        del siblings[nfc(node.name)]
        node.parent = None

    def walk(
        self, node: Node, *, raw: object, operation: int, budget: int | None = None
    ) -> Iterator[tuple[tuple[str, ...], Node]]:
        """Every item below ``node`` (pre-order) with its path relative to ``node``.

        ``budget``: the steps the items may expand into (a file one, a folder two); past it,
        OverBudgetError, having listed no more than the budget's worth of items."""
        stack: list[tuple[tuple[str, ...], Node]] = [((), node)]
        spent = 0
        while stack:
            rel, current = stack.pop()
            if current is not node:
                yield rel, current
            if current.kind is Kind.DIR:
                left = None if budget is None else budget - spent
                children = self.children(current, left)
                if budget is not None:
                    spent += sum(2 if c.kind is Kind.DIR else 1 for c in children.values())
                    if spent > budget:
                        raise OverBudgetError
                if current.ambiguous:
                    raise PlanError(
                        ErrorCode.PATH_AMBIGUOUS,
                        f"{'/'.join(current.parts)} holds names that are equal after Unicode "
                        "normalisation; rename one first",
                        operation=operation,
                        path=str(raw),
                    )
                for child in sorted(children.values(), key=lambda n: n.name, reverse=True):
                    refuse_unsafe(child, raw=raw, operation=operation)
                    stack.append(((*rel, child.name), child))


def refuse_unsafe(node: Node, *, raw: object, operation: int) -> None:
    """Symbolic links, foreign mounts and special files are never touched."""
    if node.kind is Kind.FILE or node.kind is Kind.DIR:
        return
    where = "/".join(node.parts)
    if node.kind is Kind.SYMLINK:
        raise PlanError(
            ErrorCode.SYMLINK_REFUSED,
            f"{where} is a symbolic link; fileops never follows or moves links",
            operation=operation,
            path=str(raw),
        )
    if node.kind is Kind.MOUNT:
        raise PlanError(
            ErrorCode.MOUNT_CROSSING,
            f"{where} is another filesystem mounted inside the case",
            operation=operation,
            path=str(raw),
        )
    if node.kind is Kind.OTHER:
        raise PlanError(
            ErrorCode.TYPE_CONFLICT,
            f"{where} is a special file (device, pipe or socket)",
            operation=operation,
            path=str(raw),
        )
