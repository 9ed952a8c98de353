"""The inverse of an applied plan: moves reversed, trash restored, created items trashed."""

from __future__ import annotations

from typing import Any

from fileops_daemon.plan import Plan
from fileops_daemon.simulate import OpRecord
from fileops_daemon.steps import Parts

__all__ = ["inverse_plan", "undo_plan_id"]


def undo_plan_id(plan_id: str) -> str:
    return f"{plan_id}.undo"


def inverse_plan(plan: Plan, records: list[OpRecord]) -> dict[str, Any]:
    """A plan document that, applied right after ``plan``, gives back the original tree.

    Operations are undone last-first; each one first removes what it placed, then puts back
    what it sent to the trash. The inverse starts as a dry run, like every plan.
    """

    def show(parts: Parts) -> str:
        return "/".join((plan.case_name, *parts))

    operations: list[dict[str, Any]] = []
    for record in reversed(records):
        if record.outcome not in ("ok", "applied"):
            continue
        if record.created:
            operations.append({"type": "delete", "path": show(record.created[0])})
        if record.moved is not None:
            origin, target = record.moved
            if record.operation.type == "move":
                operations.append({"type": "move", "from": show(target), "to": show(origin)})
            else:
                operations.append({"type": "delete", "path": show(target)})
        if record.written is not None:
            operations.append({"type": "delete", "path": show(record.written)})
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
