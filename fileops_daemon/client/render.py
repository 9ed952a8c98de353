"""Human views of a result: a tree of the changes, and one-line summaries."""

from __future__ import annotations

import unicodedata
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

__all__ = [
    "change_count",
    "change_tree",
    "count_line",
    "error_text",
    "print_result",
    "printable",
    "replay_note",
    "safe",
    "summary_line",
]

#: A tree of thousands of lines helps nobody (and takes seconds to draw).
MAX_SHOWN_CHANGES = 200

_STATUS_STYLE = {"planned": "cyan", "applied": "green", "rejected": "yellow", "failed": "red"}


def printable(value: object) -> str:
    """Text safe for a terminal: control, format (bidi) and unpaired surrogate characters are
    shown as escapes, so a hostile plan_id or path cannot move the cursor or recolour a line."""
    text = str(value)
    if text.isascii() and text.isprintable():
        return text
    return "".join(
        ch if ch == " " or unicodedata.category(ch) not in _UNSAFE else ascii(ch)[1:-1]
        for ch in text
    )


#: Control, format, surrogate, line and paragraph separators, unassigned.
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn"})


def change_count(result: dict[str, Any]) -> int:
    """How many changes a result lists, counting those a shortened result left out."""
    truncated = result.get("truncated") or {}
    return int(truncated.get("changes", len(result.get("changes") or [])))


def replay_note(result: dict[str, Any]) -> str:
    """What a replayed result means to its reader: when the plan was settled, and that the
    request it answers changed nothing."""
    status = printable(result.get("status", ""))
    when = printable(result.get("finished_at", "before"))
    return f"already {status} at {when} (this request changed nothing)"


def summary_line(result: dict[str, Any]) -> str:
    status = printable(result["status"])
    verb = "would change" if status == "planned" else "changed"
    line = (
        f"{status}: plan '{printable(result['plan_id'])}' "
        f"on case '{printable(result['case_name'])}'"
    )
    if result.get("replay") is True:  # a stored answer given again: this request did nothing
        line += f": {replay_note(result)}"
    if status in ("planned", "applied"):
        return f"{line}, {verb} {change_count(result)} item(s)"
    errors = result.get("errors") or []
    if errors:
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"{line}: {error_text(errors[0])}{more}"
    return line


def error_text(error: dict[str, Any]) -> str:
    """``code: message``, and the path the error is about when the message does not say it."""
    text = f"{printable(error.get('code', ''))}: {printable(error.get('message', ''))}"
    path = error.get("path")
    if isinstance(path, str) and path and path not in str(error.get("message", "")):
        text += f" (path: {printable(path)})"
    return text


#: How the count line names each kind of change: (one, many).
_COUNTED = {
    "create_folder": ("new folder", "new folders"),
    "move": ("move", "moves"),
    "copy": ("copy", "copies"),
    "write": ("write", "writes"),
    "trash": ("to trash", "to trash"),
}


def count_line(result: dict[str, Any]) -> str:
    """The changes by kind, e.g. ``2 new folders, 1 move, 1 to trash``."""
    counts = {action: 0 for action in _COUNTED}
    for change in result.get("changes") or []:
        if change.get("action") in counts:
            counts[change["action"]] += 1
    parts = [f"{n} {_COUNTED[action][n != 1]}" for action, n in counts.items() if n]
    text = ", ".join(parts) or "no changes"
    shown = len(result.get("changes") or [])
    if shown < change_count(result):  # a shortened result: say what was counted
        text += f" (in the first {shown} of {change_count(result)} changes)"
    return text


def _label(change: dict[str, Any]) -> tuple[str, str]:
    action = change["action"]
    if action == "create_folder":
        return change["path"], "[green]+ new folder[/]"
    if action == "move":
        files = f", {change['files']} file(s)" if "files" in change else ""
        return change["to"], f"[cyan]<- moved from {safe(change['from'])}{files}[/]"
    if action == "copy":
        return change["to"], f"[cyan]<- copied from {safe(change['from'])}[/]"
    if action == "write":
        return change["path"], f"[green]+ written, {change['bytes']} bytes[/]"
    return change["path"], f"[red]x to trash ({safe(change['to'])})[/]"


def safe(value: object) -> str:
    """Printable and free of rich markup."""
    return escape(printable(value))


def change_tree(result: dict[str, Any]) -> Tree:
    """Changed paths as a folder tree, each leaf saying what happens to it."""
    style = _STATUS_STYLE.get(result["status"], "white")
    root = Tree(f"[bold {style}]{safe(result['case_name'])}[/]")
    branches: dict[tuple[str, ...], Tree] = {(): root}

    def branch(parts: tuple[str, ...]) -> Tree:
        if parts not in branches:
            branches[parts] = branch(parts[:-1]).add(safe(parts[-1]))
        return branches[parts]

    shown = result["changes"][:MAX_SHOWN_CHANGES]
    for change in shown:
        path, label = _label(change)
        node = branch(tuple(path.split("/")[1:]))
        node.label = f"{node.label}  {label}"
    hidden = change_count(result) - len(shown)
    if hidden > 0:
        root.add(f"[dim]... and {hidden} more change(s); --json lists them all[/]")
    return root


def print_result(result: dict[str, Any], console: Console) -> None:
    style = _STATUS_STYLE.get(result["status"], "white")
    console.print(f"[{style}]{escape(summary_line(result))}[/]")
    if result["changes"]:
        console.print(change_tree(result))
    errors = result.get("errors") or []
    paths = {e.get("operation"): e.get("path") for e in errors if "operation" in e}
    for op in result["operations"]:
        if op["outcome"] == "refused":
            error = {"code": op.get("code", ""), "message": op["message"]}
            error["path"] = paths.get(op["index"])
            console.print(
                f"  [yellow]operation {op['index']} ({safe(op['type'])}): "
                f"{escape(error_text(error))}[/]"
            )
    for error in errors[1:]:  # the first is in the summary line; per operation ones above
        if "operation" not in error:
            console.print(f"  [yellow]{escape(error_text(error))}[/]")
    for line in result.get("remaining", []):
        console.print(f"  [red]still applied: {safe(line)}[/]")
    truncated = result.get("truncated")
    if truncated:
        console.print(f"  [dim]shortened; the whole result: {safe(truncated['full_result'])}[/]")
