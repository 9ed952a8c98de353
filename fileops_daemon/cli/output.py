"""How a result reaches the operator: a view on stdout, one line on stderr for scripts."""

from __future__ import annotations

import json
import os
import shlex
import sys
from functools import cache
from typing import TYPE_CHECKING, Any

from fileops_daemon.contract.exitcodes import EXIT_BY_STATUS, EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:  # rich loads only for a human view: ``--json`` does not pay for it
    from rich.console import Console

__all__ = ["console", "emit_result", "stderr_repeats_stdout", "undo_command_line"]


#: The width of a view written to a file or a pipe: wide enough that no line is wrapped.
UNWRAPPED_WIDTH = 1_000_000
#: The width of a heading rule in unwrapped output.
RULE_WIDTH = 80


def console(*, stderr: bool = False) -> Console:
    """A rich console that lets a closed pipe be seen: rich's own answer to one is to exit
    with status 1 on the spot; ``main`` ends such a run quietly, the way ``git`` does.

    Written to a file or a pipe, lines are not wrapped (rich would break them at the
    terminal's width, or at 80 columns with no terminal, paths included): a path stays
    whole on its line for ``grep`` and for copying. ``COLUMNS`` set to a number still
    wraps at that width."""
    view = _pipe_console_class()(highlight=False, stderr=stderr)
    if not view.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        view.width = UNWRAPPED_WIDTH
    return view


@cache
def _pipe_console_class() -> type[Console]:
    from rich.console import Console

    class PipeConsole(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True  # nothing more to write: the reader is gone
            raise BrokenPipeError

        def rule(self, title: Any = "", **options: Any) -> None:
            # A rule fills the width: unwrapped, that would be a million characters.
            if self.width < UNWRAPPED_WIDTH:
                super().rule(title, **options)
                return
            from rich.rule import Rule

            self.print(Rule(title, **options), width=RULE_WIDTH)

    return PipeConsole


def stderr_repeats_stdout() -> bool:
    """Whether stdout and stderr end in the same place (one terminal, or ``2>&1``): then a
    line already in the view is not written again."""
    try:
        return os.path.samestat(os.fstat(sys.stdout.fileno()), os.fstat(sys.stderr.fileno()))
    except (OSError, ValueError, AttributeError):  # no real file behind one of them
        return False


def undo_command_line(plan_id: str, *local: str) -> str:
    """``fileops undo PLAN_ID [...]`` quoted for a shell; ``local`` adds --root and such."""
    return shlex.join(["fileops", "undo", plan_id, *local])


def _write_json_line(result: dict[str, Any], encoded: bytes | None) -> None:
    """The result on one line; the stored bytes when they are the same text in stdout's
    encoding (they are compact JSON with ensure_ascii off, as here)."""
    binary = getattr(sys.stdout, "buffer", None)
    utf8 = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "") == "utf8"
    if encoded is not None and binary is not None and utf8:
        sys.stdout.flush()
        binary.write(encoded + b"\n")
        return
    sys.stdout.write(json.dumps(result, ensure_ascii=False, separators=(",", ":")) + "\n")


def emit_result(
    result: dict[str, Any],
    as_json: bool,
    *,
    undo_hint: str | None = None,
    encoded: bytes | None = None,
) -> int:
    """Print ``result`` and return its exit code. The human view of an apply ends with the
    changes counted by kind and how to undo it; ``--json`` prints the document alone.
    ``encoded``: the same document as stored (compact UTF-8 JSON), printed as it is."""
    if as_json:
        # One compact line: with indent, json falls back to its pure-Python encoder, which
        # takes ~0.3 s on a 10,000-operation result (pipe through jq to read it).
        _write_json_line(result, encoded)
    else:
        from rich.markup import escape

        from fileops_daemon.client.render import count_line, print_result, printable

        view = console()
        print_result(result, view)
        if result["status"] == "applied" and not result.get("dry_run"):
            if result.get("replay") is not True:  # a replay's summary says it changed nothing
                view.print(escape(count_line(result)))
            if undo_hint is not None:
                # Not wrapped: a command is copied whole.
                view.print(f"undo with: {escape(printable(undo_hint))}", soft_wrap=True)
    sys.stdout.flush()
    code = EXIT_BY_STATUS.get(result["status"], EXIT_FAILED)
    if code != EXIT_OK and (as_json or not stderr_repeats_stdout()):
        from fileops_daemon.client.render import summary_line

        print(f"fileops: {summary_line(result)}", file=sys.stderr)
    return code
