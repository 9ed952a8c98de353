"""What the agent tools answer besides a daemon's result: local refusals, ``pending`` and
``error`` documents, and the few readable lines a model gets for any of them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from fileops_daemon.client.infra import classify
from fileops_daemon.contract.errors import PlanError, shorten
from fileops_daemon.contract.exitcodes import EXIT_ERROR
from fileops_daemon.contract.limits import Limits
from fileops_daemon.contract.plan import parse_plan
from fileops_daemon.contract.results import now, refusal_result
from fileops_daemon.core.simulate import confine_plan
from fileops_daemon.core.undo import UndoRequest

__all__ = [
    "error_result",
    "local_refusal",
    "pending_result",
    "summarize",
]

log = structlog.get_logger("fileops.tools")

#: Shown to the model after a dry run of the single legacy tool.
LEGACY_NEXT_STEP = (
    "This was a dry run; nothing changed. If these changes are right, send the "
    "same plan with dry_run false."
)


def local_refusal(
    document: Mapping[str, Any], limits: Limits | None = None
) -> dict[str, Any] | None:
    """Refuse what is certainly wrong without a round trip (the daemon checks again), with
    the daemon's codes: schema, ``plan_id`` syntax, confinement, and the limits known here
    (``limits``; default: FILEOPS_MAX_* of this process, else the daemon's defaults). What
    only the daemon can refuse (a lower limit of its own, the tree) comes back by message id."""
    try:
        if "undo_of" in document and "operations" not in document:
            UndoRequest.from_document(document)
            return None
        parsed = parse_plan(document, limits if limits is not None else _known_limits())
    except PlanError as exc:
        return refusal_result(document, exc, now())
    errors = confine_plan(parsed)[1]
    if errors:
        return refusal_result(document, errors[0], now()) | {
            "errors": [e.to_dict() for e in errors]
        }
    return None


def _known_limits() -> Limits:
    """The limits set in this process's environment; the defaults if they are unset or wrong
    (the daemon's own settings decide anyway)."""
    try:
        return Limits.from_env()
    except ValueError:
        return Limits()


def pending_result(
    document: Mapping[str, Any], timeout: float, follow_up: str = ""
) -> dict[str, Any]:
    return {
        "plan_id": document.get("plan_id"),
        "case_name": document.get("case_name"),
        "status": "pending",
        "message": f"no result within {timeout:.0f} s; the plan is queued and will be "
        "handled when the fileops daemon runs. Do not resend it with another plan_id." + follow_up,
    }


def error_result(
    document: Mapping[str, Any], exc: BaseException, *, sent: bool = False
) -> dict[str, Any]:
    """``exc`` as an answer: status ``error``, what went wrong and what to do about it.

    ``sent``: the plan had been published when it happened, so it may still be handled.
    """
    plan_id, case_name = document.get("plan_id"), document.get("case_name")
    problem = classify(exc)
    if problem is None:
        log.exception("tools.unexpected_error", plan_id=plan_id, case_name=case_name)
        kind, exit_code = "unexpected", EXIT_ERROR
        message = shorten(f"unexpected error: {type(exc).__name__}: {exc}", 300)
        advice = "Nothing was sent or the answer was lost; report this to the operators."
    else:
        log.warning(
            "tools.infra_problem",
            plan_id=plan_id,
            case_name=case_name,
            problem=problem.kind,
            detail=problem.message,
        )
        kind, message, advice, exit_code = (
            problem.kind,
            problem.message,
            problem.advice,
            problem.exit_code,
        )
    return {
        "plan_id": plan_id,
        "case_name": case_name,
        "status": "error",
        "sent": sent,
        "problem": kind,
        "message": message,
        "advice": advice,
        "exit_code": exit_code,
    }


def summarize(result: Mapping[str, Any], next_step: str = LEGACY_NEXT_STEP) -> str:
    """A few readable lines for the model: what happened, what to do next.

    ``next_step`` is what a dry run's summary ends with (which tool applies it).
    """
    status = result.get("status")
    plan_id = result.get("plan_id")
    if status == "pending":
        return f"Plan {plan_id}: {result.get('message')}"
    if status == "error":
        effect = (
            "The plan was sent before this happened and may still be handled; do not resend "
            "it with another plan_id."
            if result.get("sent")
            else "The plan was not sent; nothing changed."
        )
        return (
            f"Plan {plan_id}: error ({result.get('problem')}): {result.get('message')}. "
            f"{effect} {result.get('advice')}"
        )
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
        lines.append(next_step)
    elif status == "rejected":
        lines.append(
            "Nothing was changed. Fix the operations above and send a new plan with a new plan_id."
        )
    elif status == "failed":
        lines.append("The apply failed and was rolled back; nothing was changed.")
    elif status == "awaiting_approval":
        lines.append(
            "Nothing was changed yet: these changes need an operator's approval (fileops "
            f"approve {plan_id}). Tell the user, and stop; the final result follows when "
            "an operator approves or rejects it. Do not send the plan again."
        )
    return "\n".join(lines)
