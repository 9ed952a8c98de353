"""Undo: the inverse of an applied plan, and the only way an undo plan comes to exist.

An applied plan stores its inverse (moves reversed, trash restored, created items trashed).
Nobody sends an undo plan: an operator sends an *undo request* naming the plan, and fileops
builds the plan from the inverse it stored itself, under an id derived from the undone plan's
id. That id form is reserved: an agent's plan that claims ``undo_of`` or takes such an id is
refused (``undo_forged``), so an undo can be neither forged nor blocked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.contract.limits import Limits
from fileops_daemon.contract.plan import (
    Plan,
    decode_document,
    load_schema,
    parse_plan,
    undo_plan_id,
)
from fileops_daemon.contract.results import OperationOutcome
from fileops_daemon.core.paths import WORK_DIR_NAME
from fileops_daemon.core.simulate import OpRecord
from fileops_daemon.core.steps import Parts
from fileops_daemon.core.tree import Kind

__all__ = [
    "UndoRequest",
    "build_undo_plan",
    "inverse_plan",
    "parse_message",
    "undo_plan_id",
    "undo_request_document",
]


@cache
def _request_validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema("undo-request"))


@dataclass(frozen=True)
class UndoRequest:
    """ "Undo plan ``undo_of``": the message an operator sends instead of an undo plan."""

    undo_of: str
    dry_run: bool = True
    case_name: str | None = None

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> UndoRequest:
        """Check ``document`` against undo-request.schema.json and read it."""
        error = next(iter(_request_validator().iter_errors(document)), None)
        if error is not None:
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
            raise PlanError(ErrorCode.SCHEMA_VIOLATION, f"undo request{where}: {error.message}")
        undo_of: str = document["undo_of"]
        plan_id = document.get("plan_id")
        if plan_id is not None and plan_id != undo_plan_id(undo_of):
            raise PlanError(
                ErrorCode.UNDO_FORGED,
                f"the undo of {undo_of!r} is named {undo_plan_id(undo_of)!r}, not {plan_id!r}",
            )
        return cls(
            undo_of=undo_of,
            dry_run=document.get("dry_run", True),
            case_name=document.get("case_name"),
        )


def parse_message(data: bytes | str, limits: Limits | None = None) -> Plan | UndoRequest:
    """A plan message: a plan, or an undo request (``undo_of`` and no operations)."""
    limits = limits or Limits()
    document = decode_document(data, limits)
    if "undo_of" in document and "operations" not in document:
        return UndoRequest.from_document(document)
    return parse_plan(document, limits)


def undo_request_document(
    undo_of: str, case_name: str, *, dry_run: bool, requested_by: str = "fileops undo"
) -> dict[str, Any]:
    """The message that asks the daemon to apply (or preview) ``undo_of``'s stored inverse."""
    return {
        "undo_of": undo_of,
        "plan_id": undo_plan_id(undo_of),
        "case_name": case_name,
        "dry_run": dry_run,
        "requested_by": requested_by,
    }


def build_undo_plan(
    undo_of: str,
    stored: Mapping[str, Any] | None,
    case_name: str,
    *,
    dry_run: bool,
    limits: Limits | None = None,
) -> Plan:
    """The undo plan of ``undo_of``, from the inverse stored when it was applied.

    Only the stored operations are used: the id, ``undo_of`` and the case are fileops' own.
    The stored inverse was read back from disk or GCS, so it goes through the same parse (and,
    when run, the same confinement and simulation) as any plan.
    """
    if not isinstance(stored, Mapping) or not isinstance(stored.get("operations"), list):
        raise PlanError(ErrorCode.UNDO_UNAVAILABLE, f"no inverse plan is stored for {undo_of!r}")
    if stored.get("case_name") != case_name:
        raise PlanError(
            ErrorCode.UNDO_UNAVAILABLE,
            f"the inverse stored for {undo_of!r} names another case; refused",
        )
    document = {
        "plan_id": undo_plan_id(undo_of),
        "case_name": case_name,
        "dry_run": dry_run,
        "requested_by": "fileops undo",
        "reason": f"undo of {undo_of}",
        "undo_of": undo_of,
        "operations": stored["operations"],
    }
    return parse_plan(document, limits, undo_of=undo_of)


def inverse_plan(plan: Plan, records: list[OpRecord]) -> dict[str, Any]:
    """A plan document that, applied right after ``plan``, gives back the original tree.

    Operations are undone last-first; each one first removes what it placed, then puts back
    what it sent to the trash. An undo plan's own moves out of a trash are undone by a delete
    (into the undo's trash: no plan may move anything into a trash), so an undo can be undone.
    """

    def show(parts: Parts) -> str:
        return "/".join((plan.case_name, *parts))

    operations: list[dict[str, Any]] = []
    for record in reversed(records):
        if record.outcome not in (OperationOutcome.OK, OperationOutcome.APPLIED):
            continue
        # Every delete names what the plan left there: the undo refuses (precondition_failed)
        # rather than trash what someone put or changed there since.
        if record.created:
            folder = {"files": 0}
            operations.append({"type": "delete", "path": show(record.created[0]), "expect": folder})
        if record.moved is not None:
            origin, target = record.moved
            if record.operation.type == "move" and origin[0] != WORK_DIR_NAME:
                operations.append({"type": "move", "from": show(target), "to": show(origin)})
            else:
                placed = (
                    {"files": record.files} if record.kind is Kind.DIR else {"size": record.bytes}
                )
                operations.append({"type": "delete", "path": show(target), "expect": placed})
        if record.written is not None:
            content = record.operation.content or b""
            written = {"size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
            operations.append({"type": "delete", "path": show(record.written), "expect": written})
        for original, trash in record.trashed:
            operations.append({"type": "move", "from": show(trash), "to": show(original)})
    return {
        "plan_id": undo_plan_id(plan.plan_id),
        "case_name": plan.case_name,
        "dry_run": True,
        "requested_by": "fileops undo",
        "reason": f"undo of {plan.plan_id}",
        "undo_of": plan.plan_id,
        "operations": operations,
    }
