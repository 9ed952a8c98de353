"""The tree of changes as the page draws it: the CLI's tree (``client/render.py``), as rows.

A result's changes become folders and leaves, each marked with what happens to it (new folder,
moved from, copied from, written, to the trash). The template draws the rows in one loop (no
recursion, so a plan of 10,000 changes renders in milliseconds); folders are ``<details>``
elements, open for small plans and near the top of large ones, each with the number of
changes below it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Mark", "Row", "change_rows", "counts"]

#: Plans with at most this many changes show every folder open.
OPEN_ALL_BELOW = 150
#: In larger plans, folders this deep (1 = the case's own folders) start open.
OPEN_DEPTH = 1


@dataclass(frozen=True)
class Mark:
    kind: str  # new | move | copy | write | trash: the CSS class and the symbol
    text: str  # what happens, in words
    path: str = ""  # the other path (moved from, copied from, where in the trash)


@dataclass
class _Node:
    name: str
    marks: list[Mark] = field(default_factory=list)
    children: dict[str, _Node] = field(default_factory=dict)
    below: int = 0  # changes at or under this node


@dataclass(frozen=True)
class Row:
    kind: str  # open | close | leaf
    name: str = ""
    marks: tuple[Mark, ...] = ()
    count: int = 0
    depth: int = 0
    expanded: bool = False


def _mark(change: dict[str, Any]) -> tuple[str, Mark]:
    action = change.get("action")
    if action == "create_folder":
        return str(change.get("path", "")), Mark("new", "new folder")
    if action == "move":
        files = change.get("files")
        text = "moved from" if files is None else f"moved ({files} files) from"
        return str(change.get("to", "")), Mark("move", text, str(change.get("from", "")))
    if action == "copy":
        return str(change.get("to", "")), Mark("copy", "copied from", str(change.get("from", "")))
    if action == "write":
        return str(change.get("path", "")), Mark("write", f"written, {change.get('bytes')} bytes")
    return str(change.get("path", "")), Mark("trash", "to the trash", str(change.get("to", "")))


def change_rows(changes: list[dict[str, Any]]) -> list[Row]:
    """The rows that draw ``changes`` as a tree under the case folder (which is not a row)."""
    root = _Node("")
    for change in changes:
        path, mark = _mark(change)
        node = root
        node.below += 1
        for part in path.split("/")[1:]:  # the first part is the case folder
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = _Node(part)
            node = child
            node.below += 1
        node.marks.append(mark)
    open_all = len(changes) <= OPEN_ALL_BELOW
    rows: list[Row] = []
    # Depth-first without recursion: (node, depth, closing?) on a stack.
    stack: list[tuple[_Node, int, bool]] = [(child, 1, False) for child in reversed(_sorted(root))]
    while stack:
        node, depth, closing = stack.pop()
        if closing:
            rows.append(Row("close", depth=depth))
            continue
        if not node.children:
            rows.append(Row("leaf", node.name, tuple(node.marks), node.below, depth))
            continue
        expanded = open_all or depth <= OPEN_DEPTH
        rows.append(Row("open", node.name, tuple(node.marks), node.below, depth, expanded))
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in reversed(_sorted(node)))
    return rows


def _sorted(node: _Node) -> list[_Node]:
    """Folders first, then files, each by name (as a file browser lists them)."""
    return sorted(node.children.values(), key=lambda child: (not child.children, child.name))


_COUNTED = {
    "create_folder": ("new folder", "new folders"),
    "move": ("move", "moves"),
    "copy": ("copy", "copies"),
    "write": ("write", "writes"),
    "trash": ("to the trash", "to the trash"),
}


def counts(changes: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    """(action, how many, words) for each kind of change present, in a fixed order."""
    found = dict.fromkeys(_COUNTED, 0)
    for change in changes:
        action = change.get("action")
        if action in found:
            found[action] += 1
    return [(a, n, _COUNTED[a][n != 1]) for a, n in found.items() if n]
