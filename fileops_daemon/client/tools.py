"""The first tool functions for LLM agents, and the single LangChain tool (extra ``agent``).

Kept as they were for the agents that use them; new agents take the four tools of
``toolkit.file_ops_tools``. Whatever goes wrong comes back as data the model can act on: a
result document with codes and messages per operation, ``pending``, or ``error`` with what to
do. Never a stack trace.
"""

from __future__ import annotations

import json
from typing import Any

from fileops_daemon.client.answers import error_result, local_refusal, pending_result, summarize
from fileops_daemon.client.api import FileopsClient, default_client
from fileops_daemon.contract.plan import load_schema

__all__ = [
    "TOOL_DESCRIPTION",
    "apply_reorg_plan",
    "default_client",
    "langchain_tool",
    "submit_file_ops_plan",
    "summarize",
]

DEFAULT_TIMEOUT = 60.0

TOOL_DESCRIPTION = """\
Reorganise files inside ONE legal case folder by sending a plan of file operations.
Rules:
- Always send the plan with "dry_run": true first, read the changes, then send the SAME plan
  (same plan_id, same operations) with "dry_run": false to apply it.
- Every path starts with the case folder name (case_name) and stays inside it; no "..",
  no absolute paths. Folders you move files into must exist or be created by an earlier
  "mkdir" in the same plan.
- Operations: mkdir {path}; move {from,to} (files or folders, also renames); copy {from,to}
  (one file); delete {path} (goes to a trash folder, can be undone); write {path,content}.
  Existing destinations are refused unless "overwrite": true (the old one goes to the trash).
- One plan per case change; a new change needs a new plan_id. If the plan is rejected, read
  each operation's code and message, fix the plan and send it with a new plan_id.
"""


def submit_file_ops_plan(
    plan: dict[str, Any],
    *,
    client: FileopsClient | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """Publish a plan and return its result document (see schemas/result.schema.json).

    If no result arrives within ``timeout`` seconds, returns
    ``{"plan_id", "case_name", "status": "pending", "message"}``: the plan stays queued.
    If the plan cannot be sent or its answer not read (configuration, credentials, a host that
    does not answer, a missing topic), returns status ``error`` with ``message`` and
    ``advice`` (see answers.error_result) instead of raising.
    """
    refusal = local_refusal(plan)
    if refusal is not None:
        return refusal
    sent = False
    try:
        client = client or default_client()
        client.publish(plan)
        sent = True
        result = client.wait(str(plan.get("plan_id", "")), timeout)
    except Exception as exc:  # a tool never raises: the model gets what went wrong
        return error_result(plan, exc, sent=sent)
    return result if result is not None else pending_result(plan, timeout)


def apply_reorg_plan(
    plan_json: str,
    dry_run: bool,
    *,
    client: FileopsClient | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """Send a plan given as JSON text; ``dry_run`` decides. Returns a readable summary."""
    try:
        plan = json.loads(plan_json)
    except ValueError as exc:
        return f"The plan is not valid JSON ({exc}). Send one JSON object."
    if not isinstance(plan, dict):
        return "The plan must be one JSON object with plan_id, case_name and operations."
    plan["dry_run"] = bool(dry_run)
    return summarize(submit_file_ops_plan(plan, client=client, timeout=timeout))


def langchain_tool(client: FileopsClient | None = None, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """A LangChain StructuredTool whose arguments are exactly a plan (needs ``[agent]``).

    The first, single tool: its schema is plan.schema.json itself, which OpenAI strict mode
    does not take. New agents use ``toolkit.file_ops_tools`` (preview, apply, status, undo).
    """
    from langchain_core.tools import StructuredTool

    schema = {k: v for k, v in load_schema("plan").items() if k not in ("$id", "$schema")}

    def run(**plan: Any) -> str:
        return summarize(submit_file_ops_plan(plan, client=client, timeout=timeout))

    return StructuredTool.from_function(
        func=run,
        name="submit_file_ops_plan",
        description=TOOL_DESCRIPTION,
        args_schema=schema,
    )
