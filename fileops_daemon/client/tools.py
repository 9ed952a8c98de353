"""Tool functions for LLM agents, and a LangChain tool (extra ``agent``).

Whatever goes wrong comes back as data the model can act on: a result document with codes and
messages per operation, or a short text saying what to fix. Never a stack trace.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any

from fileops_daemon.client.api import ClientConfig, FileopsClient
from fileops_daemon.contract.errors import PlanError
from fileops_daemon.contract.plan import load_schema, parse_plan
from fileops_daemon.contract.results import now, refusal_result
from fileops_daemon.core.simulate import confine_plan

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


@cache
def default_client() -> FileopsClient:
    """A client configured from FILEOPS_* variables, shared by the tool functions."""
    return FileopsClient(ClientConfig.from_env())


def _local_refusal(plan: Mapping[str, Any]) -> dict[str, Any] | None:
    """Refuse what is certainly wrong without a round trip (the daemon checks again)."""
    try:
        parsed = parse_plan(plan)
    except PlanError as exc:
        return refusal_result(plan, exc, now())
    errors = confine_plan(parsed)[1]
    if errors:
        return refusal_result(plan, errors[0], now()) | {"errors": [e.to_dict() for e in errors]}
    return None


def submit_file_ops_plan(
    plan: dict[str, Any],
    *,
    client: FileopsClient | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """Publish a plan and return its result document (see schemas/result.schema.json).

    If no result arrives within ``timeout`` seconds, returns
    ``{"plan_id", "case_name", "status": "pending", "message"}``: the plan stays queued.
    """
    refusal = _local_refusal(plan)
    if refusal is not None:
        return refusal
    client = client or default_client()
    result = client.submit(plan, timeout=timeout)
    if result is None:
        return {
            "plan_id": plan.get("plan_id"),
            "case_name": plan.get("case_name"),
            "status": "pending",
            "message": f"no result within {timeout:.0f} s; the plan is queued and will be "
            "handled when the fileops daemon runs. Do not resend it with another plan_id.",
        }
    return result


def summarize(result: Mapping[str, Any]) -> str:
    """A few readable lines for the model: what happened, what to do next."""
    status = result.get("status")
    plan_id = result.get("plan_id")
    if status == "pending":
        return f"Plan {plan_id}: {result.get('message')}"
    lines = [f"Plan {plan_id} on case {result.get('case_name')}: {status}."]
    changes = result.get("changes") or []
    for change in changes[:50]:
        action = change["action"]
        if "from" in change and action in ("move", "copy"):
            lines.append(f"- {action} {change['from']} -> {change['to']}")
        else:
            lines.append(f"- {action} {change.get('path')}")
    if len(changes) > 50:
        lines.append(f"- ... and {len(changes) - 50} more")
    for error in result.get("errors") or []:
        where = f"operation {error['operation']}: " if "operation" in error else ""
        lines.append(f"- {where}{error['code']}: {error['message']}")
    if status == "planned":
        lines.append(
            "This was a dry run; nothing changed. If these changes are right, send the "
            "same plan with dry_run false."
        )
    elif status == "rejected":
        lines.append(
            "Nothing was changed. Fix the operations above and send a new plan with a new plan_id."
        )
    elif status == "failed":
        lines.append("The apply failed and was rolled back; nothing was changed.")
    return "\n".join(lines)


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
    """A LangChain StructuredTool whose arguments are exactly a plan (needs ``[agent]``)."""
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
