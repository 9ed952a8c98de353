"""Run one step through the case folder: re-checked right before it runs (another writer may
have raced us), and tried again after a passing filesystem fault."""

from __future__ import annotations

import errno
from dataclasses import dataclass

from fileops_daemon.core.fsops import StepConflictError
from fileops_daemon.core.paths import WORK_DIR_NAME
from fileops_daemon.core.retry import RetryPolicy
from fileops_daemon.core.step_kinds import KINDS, StepState
from fileops_daemon.core.steps import Parts, Step
from fileops_daemon.core.volume import CaseFiles

__all__ = ["StepOutcome", "StepRunner"]


@dataclass
class StepOutcome:
    """How one step ended, handed from a worker thread to the coordinator."""

    index: int
    started: bool = False  # got past its re-check (so it may have half-run)
    error: Exception | None = None


class StepRunner:
    """Checks and runs single steps of one plan in one case folder (any thread)."""

    def __init__(self, fs: CaseFiles, plan_id: str, retry: RetryPolicy) -> None:
        self.fs = fs
        self.plan_id = plan_id
        self.retry = retry

    def work(self, step: Step, index: int, allow_done: bool) -> StepOutcome:
        """Run one step (in a worker thread); every failure comes back as a value."""
        outcome = StepOutcome(index)
        try:
            self.attempt(step, index, allow_done=allow_done, outcome=outcome)
        except Exception as exc:  # any failure, even a bug, ends in a rollback
            outcome.error = exc
        return outcome

    def attempt(
        self, step: Step, index: int, *, allow_done: bool, outcome: StepOutcome | None = None
    ) -> bool:
        """Check and run one step, retrying transient errors; True when it ran now.

        ``allow_done``: the step may have run already (after a crash, or in a rollback);
        then its state is read off the tree first, and a step found done is not run.
        """
        return self.retry.run(
            lambda: self._advance(step, index, allow_done=allow_done, outcome=outcome),
            # A retry may follow a half-done try: then the step may already show as done.
            lambda: self._advance(step, index, allow_done=True, outcome=outcome),
        )

    def check(self, step: Step) -> StepState:
        """Which of the step's pre- and postcondition holds now (raises if neither)."""
        return KINDS[step.kind].check(self.fs, step)

    def _advance(
        self, step: Step, index: int, *, allow_done: bool, outcome: StepOutcome | None
    ) -> bool:
        if not allow_done:
            # The usual path: each operation checks its own precondition atomically (mkdir
            # and rename-without-replace fail if the target exists, rmdir if it is not an
            # empty folder), so a conflict is raised before anything changes.
            if outcome is not None:
                outcome.started = True
            try:
                self._run(step, index)
            except StepConflictError:
                if outcome is not None:
                    outcome.started = False
                raise
            return True
        state = self.check(step)
        if state is StepState.PENDING:
            if outcome is not None:
                outcome.started = True
            self._run(step, index)
            return True
        if state is StepState.DUPLICATE:
            self._drop_duplicate(step)
        return False

    def _drop_duplicate(self, step: Step) -> None:
        """A rename stopped between copy and delete: both names hold the same content."""
        assert step.src is not None
        if self.fs.sha256(step.src) != self.fs.sha256(step.dst):
            raise StepConflictError(f"{'/'.join(step.src)} and {'/'.join(step.dst)} both exist")
        self.fs.unlink(step.src)

    def _run(self, step: Step, index: int) -> None:
        """Make the change; what the tree says against it becomes a StepConflictError."""
        if step.dst[0] == WORK_DIR_NAME:
            self.fs.makedirs(step.dst[:-1])  # our own trash folders
        try:
            KINDS[step.kind].run(self.fs, step, self._staging(index))
        except FileExistsError as exc:
            raise StepConflictError(f"{'/'.join(step.dst)} appeared meanwhile") from exc
        except FileNotFoundError as exc:
            raise StepConflictError(f"{step.describe()}: something it needs is gone") from exc
        except OSError as exc:
            if exc.errno == errno.ENOTEMPTY:
                raise StepConflictError(
                    f"the folder {'/'.join(step.dst)} is not empty: something was added to it"
                ) from exc
            if exc.errno == errno.ENOTDIR:
                raise StepConflictError(f"{step.describe()}: a folder was replaced") from exc
            raise

    def _staging(self, index: int) -> Parts:
        return (WORK_DIR_NAME, self.plan_id, "staging", f"{index}.part")
