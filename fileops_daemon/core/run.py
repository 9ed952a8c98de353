"""One apply of one plan, from its journal: forward, then rollback if a step fails."""

from __future__ import annotations

import threading

from fileops_daemon.contract.errors import ErrorCode
from fileops_daemon.core.fsops import SourceChangedError, StepConflictError
from fileops_daemon.core.journal import JournalPhase
from fileops_daemon.core.outcome import ApplyOutcome, ApplyPaused
from fileops_daemon.core.pacing import StepPacer
from fileops_daemon.core.retry import RetryPolicy
from fileops_daemon.core.rollback import roll_back
from fileops_daemon.core.run_result import finish, unopened
from fileops_daemon.core.run_state import FailureInfo, ProgressCallback, RunState
from fileops_daemon.core.scheduler import schedule
from fileops_daemon.core.step_runner import StepOutcome, StepRunner
from fileops_daemon.core.volume import Volume

__all__ = ["Run"]


class Run:
    """Runs the phases a journal is in: applying, then rolling back if a step failed."""

    def __init__(
        self,
        state: RunState,
        *,
        retry: RetryPolicy,
        on_step: ProgressCallback | None,
        parallelism: int,
        pacer: StepPacer,
        pause: threading.Event,
        volume: Volume,
    ) -> None:
        self.state = state
        self.retry = retry
        self.on_step = on_step
        self.parallelism = parallelism
        self.pacer = pacer
        self.pause = pause
        self.volume = volume

    def execute(self) -> ApplyOutcome:
        state = self.state
        try:
            # Opening the case is a request like any other: a passing fault is retried.
            fs = self.retry.run(
                lambda: self.volume.open_case(state.case_dir),
                lambda: self.volume.open_case(state.case_dir),
            )
        except OSError as exc:  # the case folder vanished or became a link since the journal
            state.journal.close()
            return unopened(state, exc)
        try:
            runner = StepRunner(fs, state.plan.plan_id, self.retry)
            if state.phase is JournalPhase.APPLYING:
                failure = self._forward(runner)
                if failure is None:
                    state.enter(JournalPhase.APPLIED)
                else:
                    state.log.warning("apply.step_failed", **failure)
                    state.enter(JournalPhase.ROLLING_BACK, failure)
            if state.phase.rolling_back:
                remaining, transient = roll_back(state, runner)
                info = {k: v for k, v in state.progress.info.items() if k != "remaining"}
                final = JournalPhase.ROLLBACK_STUCK if transient else JournalPhase.ROLLED_BACK
                state.enter(final, {"remaining": remaining, **info})
            self.volume.tidy_work_dirs(
                state.case_dir,
                state.plan.plan_id,
                keep_trash=state.phase is JournalPhase.APPLIED,
            )
        finally:
            fs.close()
            state.journal.close()
        return finish(state)

    # -- forward ----------------------------------------------------------------------------------

    def _forward(self, runner: StepRunner) -> FailureInfo | None:
        """Run the steps not yet done (see ``scheduler``); the failure that stopped them, or
        None. Raises ApplyPaused when a pause was asked for and nothing failed."""
        state = self.state
        steps = state.steps
        # After a crash, steps without a durable mark may have run already: accept "done".
        allow_done = state.resumed
        scheduled = schedule(
            steps,
            [i for i in range(len(steps)) if i not in state.progress.done],
            parallelism=self.parallelism,
            may_start=self._may_start,
            before=state.journal.before,
            work=lambda index: runner.work(steps[index], index, allow_done),
            settle=self._settle,
        )
        if scheduled.paused and scheduled.failure is None:
            done = len(state.progress.done)
            state.log.info("apply.paused", done=done, steps=len(steps))
            raise ApplyPaused(f"plan {state.plan.plan_id} paused after {done} steps")
        return scheduled.failure

    def _may_start(self) -> bool:
        """Wait for the next step's slot under the cap; False once a pause was asked for."""
        self.pacer.wait(self.pause)
        return not self.pause.is_set()

    def _settle(self, outcome: StepOutcome) -> FailureInfo | None:
        """Journal a finished step (coordinator thread only); the failure if it failed."""
        state = self.state
        if outcome.error is not None:
            if outcome.started:
                state.half_run.append(outcome.index)
            return self._failure(outcome)
        state.mark_done(outcome.index)
        if self.on_step is not None:
            self.on_step(len(state.progress.done), len(state.steps))
        return None

    def _failure(self, outcome: StepOutcome) -> FailureInfo:
        exc, index = outcome.error, outcome.index
        step = self.state.steps[index]
        if isinstance(exc, StepConflictError):
            code, message = exc.code, exc.message
            operation = self.state.plan.operations[step.operation]
            if isinstance(exc, SourceChangedError) and operation.expect is not None:
                code = ErrorCode.PRECONDITION_FAILED  # the file is no longer what it expects
        elif isinstance(exc, OSError):
            code, message = ErrorCode.IO_ERROR, str(exc)
        else:
            self.state.log.exception("apply.bug", step=index)
            code, message = ErrorCode.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"
        return {
            "started": outcome.started,  # False: refused by its re-check, never ran
            "half_run": sorted(self.state.half_run),  # failed after starting: may have half-run
            "code": code.value,
            "message": f"step {index + 1} of {len(self.state.steps)} ({step.describe()}): "
            f"{message}; everything done before it was rolled back",
            "step": index,
            "operation": step.operation,
        }
