"""The agent tools as LangChain tools (extra ``agent``): preview, apply, status, undo.

Each is a ``StructuredTool`` with a sync ``func`` and an async ``coroutine``, an argument
schema that OpenAI strict mode and Anthropic both take (client/toolargs.py), and
``content_and_artifact`` answers: the model reads a few lines, the graph gets the whole
document as the ToolMessage's ``artifact``. Preview and apply are separate tools so that a
human-in-the-loop interrupt can stop applies alone (a wrapper of ``apply_file_ops`` that calls
LangGraph's ``interrupt()`` first, as in tests/client/test_langgraph_agent.py, or an agent
middleware that interrupts on that tool's name).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fileops_daemon.client.answers import missing_answer, summarize
from fileops_daemon.client.api import FileopsClient
from fileops_daemon.client.toolargs import PLAN_ARGS, STATUS_ARGS, UNDO_ARGS
from fileops_daemon.client.toolbox import DEFAULT_TIMEOUT, STATUS_WAIT, FileOpsTools
from fileops_daemon.contract.plan import is_undo_plan_id

__all__ = [
    "APPLY_DESCRIPTION",
    "PREVIEW_DESCRIPTION",
    "STATUS_DESCRIPTION",
    "UNDO_DESCRIPTION",
    "file_ops_tools",
    "model_answer",
]

PREVIEW_DESCRIPTION = """\
Dry run of a plan of file operations in ONE case folder: lists what would change, changes \
nothing. Paths start with case_name and stay inside it. Operations: mkdir {path}; move \
{from,to} (files, folders, renames); copy {from,to} (a file); delete {path} (to a trash); \
write {path,content,encoding} (encoding text or base64); unused fields null. overwrite true \
replaces an existing destination. expect (move, copy, delete): the source's size, sha256 or \
file count as you saw it; if it changed, the plan is refused. Move only into folders that \
exist or an earlier mkdir makes. reason: why, for the audit log."""

APPLY_DESCRIPTION = """\
Apply a plan previewed with preview_file_ops: the SAME plan_id, case_name and operations."""

STATUS_DESCRIPTION = "The result of a plan or undo you sent that was answered 'pending'."

UNDO_DESCRIPTION = """\
Undo an applied plan (the case goes back to how it was). dry_run true shows the changes, \
false undoes. The undo's own plan_id is '<plan_id>.undo'."""

_PREVIEW_NEXT = (
    "This was a dry run; nothing changed. If these changes are right, call apply_file_ops "
    "with the same plan_id, case_name and operations."
)
_UNDO_NEXT = (
    "This was a dry run of the undo; nothing changed. To undo, call undo_file_ops again "
    "with dry_run false."
)

Answer = tuple[str, dict[str, Any]]


def file_ops_tools(
    client: FileopsClient | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    status_wait: float = STATUS_WAIT,
    requested_by: str | None = None,
) -> list[Any]:
    """``[preview_file_ops, apply_file_ops, file_ops_status, undo_file_ops]`` sharing
    ``client`` (None: the process's shared client from FILEOPS_* variables)."""
    from langchain_core.tools import StructuredTool

    tools = FileOpsTools(
        client, timeout=timeout, status_wait=status_wait, requested_by=requested_by
    )

    # LangChain does not check arguments against a JSON schema given as a dict: a call that
    # leaves out a required one is answered here, naming it.
    def answered(
        action: Callable[..., dict[str, Any]], schema: dict[str, Any]
    ) -> Callable[..., Answer]:
        def run(**arguments: Any) -> Answer:
            missing = missing_answer(arguments, schema)
            return model_answer(missing if missing is not None else action(**arguments))

        return run

    def answered_async(
        action: Callable[..., Awaitable[dict[str, Any]]], schema: dict[str, Any]
    ) -> Callable[..., Awaitable[Answer]]:
        async def run(**arguments: Any) -> Answer:
            missing = missing_answer(arguments, schema)
            return model_answer(missing if missing is not None else await action(**arguments))

        return run

    def tool(
        name: str,
        description: str,
        schema: dict[str, Any],
        action: Callable[..., dict[str, Any]],
        async_action: Callable[..., Awaitable[dict[str, Any]]],
    ) -> Any:
        return StructuredTool.from_function(
            func=answered(action, schema),
            coroutine=answered_async(async_action, schema),
            name=name,
            description=description,
            args_schema=schema,
            response_format="content_and_artifact",
        )

    return [
        tool("preview_file_ops", PREVIEW_DESCRIPTION, PLAN_ARGS, tools.preview, tools.apreview),
        tool("apply_file_ops", APPLY_DESCRIPTION, PLAN_ARGS, tools.apply, tools.aapply),
        tool("file_ops_status", STATUS_DESCRIPTION, STATUS_ARGS, tools.status, tools.astatus),
        tool("undo_file_ops", UNDO_DESCRIPTION, UNDO_ARGS, tools.undo, tools.aundo),
    ]


def model_answer(result: dict[str, Any]) -> Answer:
    """What the model reads, and the whole document for the graph."""
    plan_id = result.get("plan_id")
    undo = isinstance(plan_id, str) and is_undo_plan_id(plan_id)
    return summarize(result, _UNDO_NEXT if undo else _PREVIEW_NEXT), result
