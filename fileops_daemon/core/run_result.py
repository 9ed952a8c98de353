"""The result document of a run that got to its steps, and the outcome around it."""

from __future__ import annotations

from typing import Any

from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.contract.plan import undo_plan_id
from fileops_daemon.contract.results import OperationOutcome, ResultStatus, build_result
from fileops_daemon.core.journal import JournalPhase
from fileops_daemon.core.outcome import ApplyOutcome, RunEnd
from fileops_daemon.core.retry import is_transient
from fileops_daemon.core.run_state import RunState

__all__ = ["finish", "unopened"]


def finish(run: RunState) -> ApplyOutcome:
    """The outcome of a run whose journal reached applied, rolled_back or rollback_stuck.
    A final one is stored: a rerun returns it."""
    if run.phase is JournalPhase.APPLIED:
        return _applied(run)
    return _failed(run)


def unopened(run: RunState, exc: OSError) -> ApplyOutcome:
    """The case folder vanished or became a link since the journal was written, or the volume
    kept failing (``io_error``: retries ran out): nothing was run now, nothing is stored (the
    journal stays, and a rerun tries again)."""
    code = ErrorCode.IO_ERROR if is_transient(exc) else ErrorCode.TREE_CHANGED
    error = PlanError(code, f"cannot open the case folder: {exc}")
    operations = run.progress.header["operations"]
    result = _result(run, ResultStatus.FAILED, operations, [], [error])
    return ApplyOutcome(RunEnd.ROLLBACK_INCOMPLETE, result, steps_done=_in_effect(run))


def _applied(run: RunState) -> ApplyOutcome:
    header = run.progress.header
    undo: dict[str, Any] = header["undo"]
    run.store.write_undo(undo)
    operations = [
        dict(op, outcome=OperationOutcome.APPLIED.value)
        if op["outcome"] == OperationOutcome.OK
        else op
        for op in header["operations"]
    ]
    extra = {"undo_plan_id": undo_plan_id(run.plan.plan_id)}
    result = _result(run, ResultStatus.APPLIED, operations, header["changes"], [], extra)
    encoded = run.store.write_result(result)
    run.log.info("apply.applied", steps=len(run.steps))
    return ApplyOutcome(RunEnd.APPLIED, result, undo, steps_done=len(run.steps), encoded=encoded)


def _failed(run: RunState) -> ApplyOutcome:
    info = run.progress.info
    error = PlanError(
        ErrorCode(info.get("code", ErrorCode.INTERNAL_ERROR.value)),
        info.get("message", "the apply failed"),
        operation=info.get("operation"),
    )
    remaining: list[str] = info.get("remaining", [])
    touched = {run.steps[i].operation for i in run.progress.done}
    operations = []
    for op in run.progress.header["operations"]:
        if op["outcome"] == OperationOutcome.OK:
            undone = op["index"] in touched and not remaining
            outcome = OperationOutcome.ROLLED_BACK if undone else OperationOutcome.NOT_APPLIED
            op = dict(op, outcome=outcome.value)
        operations.append(op)
    extra = {"remaining": remaining} if remaining else {}
    result = _result(run, ResultStatus.FAILED, operations, [], [error], extra)
    final = run.phase is JournalPhase.ROLLED_BACK
    encoded = run.store.write_result(result) if final else None  # a rerun returns it
    run.log.error("apply.failed", code=error.code.value, remaining=len(remaining))
    end = RunEnd.ROLLED_BACK if final else RunEnd.ROLLBACK_INCOMPLETE
    return ApplyOutcome(
        end, result, steps_done=_in_effect(run), remaining=tuple(remaining), encoded=encoded
    )


def _in_effect(run: RunState) -> int:
    return len(run.progress.done - run.progress.undone)


def _result(
    run: RunState,
    status: ResultStatus,
    operations: list[dict[str, Any]],
    changes: list[dict[str, Any]],
    errors: list[PlanError],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return build_result(
        plan_id=run.plan.plan_id,
        case_name=run.plan.case_name,
        dry_run=False,
        status=status,
        started=run.started,
        operations=operations,
        changes=changes,
        errors=errors,
        attempt=run.attempt,
        extra={"plan_digest": run.plan.digest, "steps": len(run.steps), **(extra or {})},
    )
