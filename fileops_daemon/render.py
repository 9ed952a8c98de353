"""Human views of a result: a tree of the changes, and one-line summaries."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

__all__ = ["change_tree", "print_result", "summary_line"]

#: A tree of thousands of lines helps nobody (and takes seconds to draw).
MAX_SHOWN_CHANGES = 200

_STATUS_STYLE = {"planned": "cyan", "applied": "green", "rejected": "yellow", "failed": "red"}


def summary_line(result: dict[str, Any]) -> str:
    status = result["status"]
    verb = "would change" if status == "planned" else "changed"
    line = f"{status}: plan {result['plan_id']!r} on case {result['case_name']!r}"
    if status in ("planned", "applied"):
        return f"{line}, {verb} {len(result['changes'])} item(s)"
    errors = result.get("errors") or []
    if errors:
        first = errors[0]
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"{line}: {first['code']}: {first['message']}{more}"
    return line


def _label(change: dict[str, Any]) -> tuple[str, str]:
    action = change["action"]
    if action == "create_folder":
        return change["path"], "[green]+ new folder[/]"
    if action == "move":
        files = f", {change['files']} file(s)" if "files" in change else ""
        return change["to"], f"[cyan]<- moved from {escape(change['from'])}{files}[/]"
    if action == "copy":
        return change["to"], f"[cyan]<- copied from {escape(change['from'])}[/]"
    if action == "write":
        return change["path"], f"[green]+ written, {change['bytes']} bytes[/]"
    return change["path"], f"[red]x to trash ({escape(change['to'])})[/]"


def change_tree(result: dict[str, Any]) -> Tree:
    """Changed paths as a folder tree, each leaf saying what happens to it."""
    style = _STATUS_STYLE.get(result["status"], "white")
    root = Tree(f"[bold {style}]{escape(result['case_name'])}[/]")
    branches: dict[tuple[str, ...], Tree] = {(): root}

    def branch(parts: tuple[str, ...]) -> Tree:
        if parts not in branches:
            branches[parts] = branch(parts[:-1]).add(escape(parts[-1]))
        return branches[parts]

    shown = result["changes"][:MAX_SHOWN_CHANGES]
    for change in shown:
        path, label = _label(change)
        node = branch(tuple(path.split("/")[1:]))
        node.label = f"{node.label}  {label}"
    hidden = len(result["changes"]) - len(shown)
    if hidden > 0:
        root.add(f"[dim]... and {hidden} more change(s); --json lists them all[/]")
    return root


def print_result(result: dict[str, Any], console: Console) -> None:
    style = _STATUS_STYLE.get(result["status"], "white")
    console.print(f"[{style}]{escape(summary_line(result))}[/]")
    if result["changes"]:
        console.print(change_tree(result))
    for op in result["operations"]:
        if op["outcome"] == "refused":
            console.print(
                f"  [yellow]operation {op['index']} ({op['type']}): "
                f"{op.get('code', '')}: {escape(op['message'])}[/]"
            )
    for line in result.get("remaining", []):
        console.print(f"  [red]still applied: {escape(line)}[/]")
