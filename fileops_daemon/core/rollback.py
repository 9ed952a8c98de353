"""Rollback: undo the steps that ran, last first, after a step failed."""

from __future__ import annotations

from fileops_daemon.core.fsops import StepConflictError
from fileops_daemon.core.retry import is_transient
from fileops_daemon.core.run_state import RunState
from fileops_daemon.core.step_kinds import StepState, undo_step
from fileops_daemon.core.step_runner import StepRunner
from fileops_daemon.core.steps import Step

__all__ = ["roll_back"]


def roll_back(run: RunState, runner: StepRunner) -> tuple[list[str], bool]:
    """Undo the steps that ran, last first (one at a time: each undo may need the next).

    Returns the steps that could not be undone, and whether any of them failed for a
    passing reason (EIO...): then a later run retries the rollback. Otherwise what is
    left is final (e.g. a folder someone else put files in is kept, with their files).
    """
    steps = run.steps
    progress = run.progress
    remaining: list[str] = []
    transient = False
    for failed in progress.info.get("half_run", []):
        if failed in progress.done:
            continue
        try:
            _settle_failed_step(run, runner, steps[failed], failed)
        except Exception as exc:  # unsettled, it may hold a second copy: retry later
            remaining.append(f"{steps[failed].describe()} (half done: {_message(exc)})")
            transient = transient or is_transient(exc)
    for index in sorted(progress.done, reverse=True):
        if index in progress.undone:
            continue
        inverse = undo_step(steps[index])
        run.journal.before(inverse)
        try:
            runner.attempt(inverse, index, allow_done=True)
        except Exception as exc:  # keep undoing the others; report this one
            remaining.append(f"{steps[index].describe()} (undo failed: {_message(exc)})")
            transient = transient or is_transient(exc)
            continue
        run.mark_undone(index, inverse)
    if remaining:
        run.log.warning(
            "apply.rollback_incomplete", remaining=remaining[:20], retry_later=transient
        )
    run.log.info("apply.rolled_back", remaining=len(remaining), retry_later=transient)
    return remaining, transient


def _message(exc: Exception) -> str:
    return exc.message if isinstance(exc, StepConflictError) else str(exc)


def _settle_failed_step(run: RunState, runner: StepRunner, step: Step, index: int) -> None:
    """The step that failed may have half-run; count it as done, or undo its half.

    I/O errors propagate (the rollback is then retried later); a step whose pre- and
    postcondition both fail did not change anything and is left alone.
    """
    try:
        state = runner.check(step)
    except StepConflictError:
        return
    if state is StepState.DONE:
        run.mark_done(index)
    elif state is StepState.DUPLICATE:
        # The copy made by an interrupted rename; the original is still in place.
        assert step.src is not None
        if runner.fs.sha256(step.src) == runner.fs.sha256(step.dst):
            runner.fs.unlink(step.dst)
