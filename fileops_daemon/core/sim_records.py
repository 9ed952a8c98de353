"""What a simulation found: each operation's record, the steps, the errors, and the diff."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.contract.plan import Operation, Plan
from fileops_daemon.contract.results import OperationOutcome
from fileops_daemon.core.steps import Parts, Step
from fileops_daemon.core.tree import Kind

__all__ = ["OpRecord", "Simulation"]


@dataclass
class OpRecord:
    """What one operation did to the virtual tree; the changes list and the undo plan use it."""

    operation: Operation
    outcome: OperationOutcome = OperationOutcome.NOT_CHECKED
    message: str = ""
    code: ErrorCode | None = None
    created: list[Parts] = field(default_factory=list)  # folders made by mkdir, outermost first
    moved: tuple[Parts, Parts] | None = None  # (from, to) of a move or copy
    kind: Kind = Kind.FILE
    files: int = 0
    trashed: list[tuple[Parts, Parts]] = field(default_factory=list)  # (original, trash)
    written: Parts | None = None
    bytes: int = 0


@dataclass
class Simulation:
    plan: Plan
    records: list[OpRecord]
    steps: list[Step]
    errors: list[PlanError]
    case_dir: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def changes(self) -> list[dict[str, Any]]:
        case = self.plan.case_name
        changes: list[dict[str, Any]] = []

        def show(parts: Parts) -> str:
            return "/".join((case, *parts))

        for record in self.records:
            if record.outcome not in (OperationOutcome.OK, OperationOutcome.APPLIED):
                continue
            index = record.operation.index
            for original, trash in record.trashed:
                changes.append(
                    {
                        "action": "trash",
                        "operation": index,
                        "path": show(original),
                        "to": show(trash),
                    }
                )
            for folder in record.created:
                changes.append(
                    {"action": "create_folder", "operation": index, "path": show(folder)}
                )
            if record.moved is not None:
                change: dict[str, Any] = {
                    "action": record.operation.type,
                    "operation": index,
                    "kind": "folder" if record.kind is Kind.DIR else "file",
                    "from": show(record.moved[0]),
                    "to": show(record.moved[1]),
                }
                if record.kind is Kind.DIR:
                    change["files"] = record.files
                changes.append(change)
            if record.written is not None:
                changes.append(
                    {
                        "action": "write",
                        "operation": index,
                        "path": show(record.written),
                        "bytes": record.bytes,
                    }
                )
        return changes
