"""Apply a plan: simulate, journal the steps, run them, and roll back if one fails.

Each step is re-checked right before it runs (another writer may have raced us). After a crash
the same call resumes: steps the journal does not mark are checked against the tree, and the
apply goes on (or the rollback it was doing goes on). A plan that finished returns its stored
result; the same plan_id with other content is refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Protocol, TypeVar

import structlog
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.contract.identity import describe_difference
from fileops_daemon.contract.limits import Limits
from fileops_daemon.contract.plan import Plan
from fileops_daemon.contract.results import OperationOutcome, ResultStatus, build_result, now
from fileops_daemon.core.fsops import CaseFS, FolderMissingError, StepConflictError
from fileops_daemon.core.journal import Journal, JournalPhase, JournalState, SyncHook
from fileops_daemon.core.pacing import StepPacer
from fileops_daemon.core.paths import WORK_DIR_NAME, nfc
from fileops_daemon.core.simulate import Simulation, simulate
from fileops_daemon.core.steps import Parts, Step
from fileops_daemon.core.store import PlanStore, case_lock
from fileops_daemon.core.tree import Kind
from fileops_daemon.core.trust import StateInvalidError, check_journal
from fileops_daemon.core.undo import inverse_plan, undo_plan_id

__all__ = [
    "TRANSIENT_ERRNOS",
    "ApplyPaused",
    "Checkpoint",
    "ProgressCallback",
    "RetryPolicy",
    "apply_plan",
    "dry_run",
    "idempotency_conflict",
]

log = structlog.get_logger("fileops.execute")

#: Errors a network filesystem returns for passing faults: retried with backoff. gcsfuse
#: passes connection errors through (an unreachable bucket gives ECONNREFUSED, not EIO).
TRANSIENT_ERRNOS = frozenset(
    {
        errno.EIO,
        errno.ESTALE,
        errno.EAGAIN,
        errno.ETIMEDOUT,
        errno.EBUSY,
        errno.EINTR,
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.ENOTCONN,
    }
)

#: Called after every step with (steps done, steps in all).
ProgressCallback = Callable[[int, int], None]


class ApplyPaused(Exception):  # noqa: N818 - a request honoured, not an error
    """The apply stopped between steps because it was asked to; the same call resumes it."""


class Checkpoint(Protocol):
    """Where a daemon mirrors the journal so another machine can take the plan over."""

    def journal_created(self, header_line: bytes) -> None:
        """The steps, before the first one runs."""

    def journal_synced(self, summary: dict[str, Any]) -> None:
        """Durable progress; raising here stops the apply (e.g. the lease was lost)."""


_T = TypeVar("_T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often a step is tried again after a transient filesystem error."""

    attempts: int = 5
    initial_wait: float = 0.2
    max_wait: float = 5.0

    def run(self, first: Callable[[], _T], again: Callable[[], _T]) -> _T:
        """``first()``; after a transient filesystem error, ``again()`` with backoff until
        the attempts are spent. Backoff only once a first try failed: the common path builds
        no retry machinery."""
        try:
            return first()
        except OSError as exc:
            if not _is_transient(exc) or self.attempts <= 1:
                raise
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts - 1),
            wait=wait_exponential(multiplier=self.initial_wait, max=self.max_wait),
            retry=retry_if_exception(_is_transient),
            reraise=True,
        )
        return retrying(again)


@dataclass
class _Outcome:
    """How one step ended, handed from a worker thread to the coordinator."""

    index: int
    started: bool = False  # got past its re-check (so it may have half-run)
    error: Exception | None = None


def _overlap(a: Step, b: Step) -> bool:
    """Whether two steps touch the same path, or one touches a parent of the other's."""
    for x in a.touched():
        for y in b.touched():
            shorter = min(len(x), len(y))
            if x[:shorter] == y[:shorter]:
                return True
    return False


class _State(Enum):
    PENDING = "pending"  # the precondition holds: the step has not run
    DONE = "done"  # the postcondition holds: the step ran
    DUPLICATE = "duplicate"  # a rename stopped between copy and delete: both names exist


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def _operation_docs(sim: Simulation) -> list[dict[str, Any]]:
    docs = []
    for record in sim.records:
        doc: dict[str, Any] = {
            "index": record.operation.index,
            "type": record.operation.type,
            "outcome": record.outcome.value,
            "message": record.message or record.outcome.value,
        }
        if record.code is not None:
            doc["code"] = record.code.value
        docs.append(doc)
    return docs


def simulation_result(sim: Simulation, started: datetime, *, attempt: int = 1) -> dict[str, Any]:
    """``planned`` (nothing changed, here is the diff) or ``rejected`` with every conflict."""
    plan = sim.plan
    return build_result(
        plan_id=plan.plan_id,
        case_name=plan.case_name,
        dry_run=plan.dry_run,
        status=ResultStatus.PLANNED if sim.ok else ResultStatus.REJECTED,
        started=started,
        operations=_operation_docs(sim),
        changes=sim.changes() if sim.ok else [],
        errors=sim.errors,
        attempt=attempt,
        extra={"plan_digest": plan.digest, "steps": len(sim.steps)},
    )


def _rejection(plan: Plan, error: PlanError, started: datetime, attempt: int) -> dict[str, Any]:
    """A ``rejected`` result for a plan refused as a whole (nothing was touched)."""
    return build_result(
        plan_id=plan.plan_id,
        case_name=plan.case_name,
        dry_run=plan.dry_run,
        status=ResultStatus.REJECTED,
        started=started,
        errors=[error],
        attempt=attempt,
        extra={"plan_digest": plan.digest},
    )


def _io_rejection(plan: Plan, exc: OSError, started: datetime, attempt: int) -> dict[str, Any]:
    error = PlanError(ErrorCode.IO_ERROR, f"reading the tree failed: {exc}")
    return _rejection(plan, error, started, attempt)


def dry_run(
    plan: Plan, projects_root: str, *, limits: Limits | None = None, attempt: int = 1
) -> dict[str, Any]:
    """Simulate only; the tree is never changed."""
    started = now()
    try:
        sim = simulate(plan, projects_root, limits)
    except OSError as exc:
        return _io_rejection(plan, exc, started, attempt)
    return simulation_result(sim, started, attempt=attempt)


def apply_plan(
    plan: Plan,
    projects_root: str,
    state_dir: str,
    *,
    limits: Limits | None = None,
    retry: RetryPolicy | None = None,
    on_step: ProgressCallback | None = None,
    checkpoint: Checkpoint | None = None,
    parallelism: int = 1,
    pacer: StepPacer | None = None,
    pause: threading.Event | None = None,
    attempt: int = 1,
) -> dict[str, Any]:
    """Apply (or, for a dry-run plan, simulate) ``plan`` and return its result document.

    ``pacer`` caps the steps started per second (shared with other applies that use it).
    Once ``pause`` is set no further step starts: the running ones finish and are journaled,
    and ApplyPaused is raised (a rollback under way is not paused: it puts the tree back).

    Exceptions raised by ``on_step`` or ``checkpoint`` stop the apply where it stands; the
    journal stays, and the next call resumes.
    """
    started = now()
    store = PlanStore(state_dir, plan.plan_id)
    stored = store.read_result()
    if stored is not None:
        return _stored_outcome(plan, stored, started, attempt)
    if plan.dry_run:
        return dry_run(plan, projects_root, limits=limits, attempt=attempt)
    retry = retry or RetryPolicy()
    try:
        with store.locked(), case_lock(state_dir, nfc(plan.case_name)):
            stored = store.read_result()  # finished while we waited for the lock?
            if stored is not None:
                return _stored_outcome(plan, stored, started, attempt)
            run = _open_run(plan, projects_root, store, limits, started, attempt, checkpoint, retry)
            if isinstance(run, dict):
                return run
            journal, state, case_dir, resumed = run
            return _Run(
                plan,
                store,
                journal,
                state,
                case_dir,
                started,
                attempt,
                resumed=resumed,
                retry=retry,
                on_step=on_step,
                parallelism=max(1, parallelism),
                pacer=pacer or StepPacer(0),
                pause=pause or threading.Event(),
            ).execute()
    except PlanError as exc:  # busy lock
        return _rejection(plan, exc, started, attempt)


def _stored_outcome(
    plan: Plan, stored: dict[str, Any], started: datetime, attempt: int
) -> dict[str, Any]:
    if not plan.matches_digest(stored.get("plan_digest")):
        return idempotency_conflict(plan, started, attempt, recorded=stored)
    return stored


def idempotency_conflict(
    plan: Plan, started: datetime, attempt: int, *, recorded: object = None
) -> dict[str, Any]:
    """The refusal of a plan whose plan_id stands for another plan; ``recorded``, that plan's
    result or journal header, lets the message say what differs."""
    difference = describe_difference(plan.document, recorded)
    error = PlanError(
        ErrorCode.IDEMPOTENCY_CONFLICT,
        f"plan_id {plan.plan_id!r} was already used for another plan: {difference}; "
        "use a new plan_id",
    )
    return _rejection(plan, error, started, attempt)


def _open_run(
    plan: Plan,
    projects_root: str,
    store: PlanStore,
    limits: Limits | None,
    started: datetime,
    attempt: int,
    checkpoint: Checkpoint | None,
    retry: RetryPolicy,
) -> tuple[Journal, JournalState, str, bool] | dict[str, Any]:
    """Reopen this plan's journal (resumed: True), or simulate and start a new one.

    Returns the journal, its state, the case folder and whether it resumes; or the result
    when there is nothing to run (a refusal).
    """
    on_sync: SyncHook | None = checkpoint.journal_synced if checkpoint else None
    if store.has_journal():
        try:
            journal, state = Journal.resume(store.journal_path, on_sync)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            error = StateInvalidError(f"the journal cannot be read: {type(exc).__name__}")
            return _rejection(plan, error, started, attempt)
        if not isinstance(state.header, dict) or not plan.matches_digest(
            state.header.get("digest")
        ):
            journal.close()
            return idempotency_conflict(plan, started, attempt, recorded=state.header)
        try:  # read back from disk (or seeded from the ledger): the same gate as a plan
            check_journal(plan, state)
        except (StateInvalidError, TypeError, AttributeError) as exc:
            journal.close()
            if not isinstance(exc, StateInvalidError):
                exc = StateInvalidError(f"the journal is malformed: {type(exc).__name__}")
            log.error(
                "apply.state_invalid",
                plan_id=plan.plan_id,
                case_name=plan.case_name,
                error=exc.message,
            )
            return _rejection(plan, exc, started, attempt)
        log.info(
            "apply.resume",
            plan_id=plan.plan_id,
            case_name=plan.case_name,
            done=len(state.done),
            state=state.state,
        )
        case_dir = os.path.join(projects_root, state.header["case_folder"])
        return journal, state, case_dir, True
    try:
        sim = _simulate_retrying(plan, projects_root, limits, retry)
    except OSError as exc:
        if _is_transient(exc):
            # Not an answer about the plan: a refusal recorded now would refuse its id for
            # good. The caller retries later (the daemon nacks the message).
            raise
        return _io_rejection(plan, exc, started, attempt)
    if not sim.ok:
        return simulation_result(sim, started, attempt=attempt)
    assert sim.case_dir is not None
    header = {
        "v": 1,
        "plan_id": plan.plan_id,
        "case_name": plan.case_name,
        "case_folder": os.path.basename(sim.case_dir),
        "digest": plan.digest,
        "created_at": started.isoformat(),
        "operations": _operation_docs(sim),
        "changes": sim.changes(),
        "undo": inverse_plan(plan, sim.records),
    }
    header_line = Journal.header_line(header, sim.steps)
    if checkpoint is not None:
        checkpoint.journal_created(header_line)
    journal = Journal.create(store.journal_path, header_line, on_sync)
    state = JournalState(header=header, steps=sim.steps)
    return journal, state, sim.case_dir, False


def _simulate_retrying(
    plan: Plan, projects_root: str, limits: Limits | None, retry: RetryPolicy
) -> Simulation:
    """The simulation, tried again after a transient filesystem error (EIO from gcsfuse)."""

    def once() -> Simulation:
        return simulate(plan, projects_root, limits)

    return retry.run(once, once)


class _Run:
    """One apply of one plan, from its journal: forward, then rollback if a step fails."""

    def __init__(
        self,
        plan: Plan,
        store: PlanStore,
        journal: Journal,
        state: JournalState,
        case_dir: str,
        started: datetime,
        attempt: int,
        *,
        resumed: bool,
        retry: RetryPolicy,
        on_step: ProgressCallback | None,
        parallelism: int,
        pacer: StepPacer,
        pause: threading.Event,
    ) -> None:
        self.plan = plan
        self.store = store
        self.journal = journal
        self.state = state
        self.case_dir = case_dir
        self.started = started
        self.attempt = attempt
        self.resumed = resumed
        self.retry = retry
        self.on_step = on_step
        self.parallelism = parallelism
        self.pacer = pacer
        self.pause = pause
        self._half_run: list[int] = []
        self.log = log.bind(plan_id=plan.plan_id, case_name=plan.case_name)

    # -- the run ----------------------------------------------------------------------------------

    def execute(self) -> dict[str, Any]:
        try:
            fs = CaseFS(self.case_dir)
        except OSError as exc:  # the case folder vanished or became a link since the journal
            self.journal.close()
            error = PlanError(ErrorCode.TREE_CHANGED, f"cannot open the case folder: {exc}")
            extra = {"plan_digest": self.plan.digest, "steps": len(self.state.steps)}
            return self._result(
                ResultStatus.FAILED, self.state.header["operations"], [], [error], extra
            )
        try:
            with fs:
                self.fs = fs
                if self.state.state is JournalPhase.APPLYING:
                    failure = self._forward()
                    if failure is None:
                        self.journal.set_state(JournalPhase.APPLIED)
                        self.state.state = JournalPhase.APPLIED
                    else:
                        self.log.warning("apply.step_failed", **failure)
                        self.journal.set_state(JournalPhase.ROLLING_BACK, **failure)
                        self.state.state, self.state.info = JournalPhase.ROLLING_BACK, failure
                if self.state.state.rolling_back:
                    remaining, transient = self._rollback()
                    final = JournalPhase.ROLLBACK_STUCK if transient else JournalPhase.ROLLED_BACK
                    info = {k: v for k, v in self.state.info.items() if k != "remaining"}
                    self.journal.set_state(final, remaining=remaining, **info)
                    self.state.state = final
                    self.state.info = dict(info, remaining=remaining)
                self._remove_empty_work_dirs()
        finally:
            self.journal.close()
        return self._finish()

    def _finish(self) -> dict[str, Any]:
        header = self.state.header
        extra: dict[str, Any] = {"plan_digest": self.plan.digest, "steps": len(self.state.steps)}
        if self.state.state is JournalPhase.APPLIED:
            self.store.write_undo(header["undo"])
            extra["undo_plan_id"] = undo_plan_id(self.plan.plan_id)
            operations = [
                dict(op, outcome=OperationOutcome.APPLIED.value)
                if op["outcome"] == OperationOutcome.OK
                else op
                for op in header["operations"]
            ]
            result = self._result(ResultStatus.APPLIED, operations, header["changes"], [], extra)
            self.store.write_result(result)
            self.log.info("apply.applied", steps=len(self.state.steps))
            return result
        info = self.state.info
        error = PlanError(
            ErrorCode(info.get("code", ErrorCode.INTERNAL_ERROR.value)),
            info.get("message", "the apply failed"),
            operation=info.get("operation"),
        )
        remaining: list[str] = info.get("remaining", [])
        touched = {self.state.steps[i].operation for i in self.state.done}
        operations = []
        for op in header["operations"]:
            if op["outcome"] == OperationOutcome.OK:
                undone = op["index"] in touched and not remaining
                outcome = OperationOutcome.ROLLED_BACK if undone else OperationOutcome.NOT_APPLIED
                op = dict(op, outcome=outcome.value)
            operations.append(op)
        if remaining:
            extra["remaining"] = remaining
        result = self._result(ResultStatus.FAILED, operations, [], [error], extra)
        if self.state.state is JournalPhase.ROLLED_BACK:  # final: a rerun returns it
            self.store.write_result(result)
        self.log.error("apply.failed", code=error.code.value, remaining=len(remaining))
        return result

    def _result(
        self,
        status: ResultStatus,
        operations: list[dict[str, Any]],
        changes: list[dict[str, Any]],
        errors: list[PlanError],
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        return build_result(
            plan_id=self.plan.plan_id,
            case_name=self.plan.case_name,
            dry_run=False,
            status=status,
            started=self.started,
            operations=operations,
            changes=changes,
            errors=errors,
            attempt=self.attempt,
            extra=extra,
        )

    # -- forward ----------------------------------------------------------------------------------

    def _forward(self) -> dict[str, Any] | None:
        """Run the steps not yet done; return the first failure (code, message, step) or None.

        Up to ``parallelism`` steps run at once. A step starts only when no running step
        touches one of its paths (or a parent or child of one), so steps that depend on each
        other keep the plan's order. On a failure, or once ``pause`` is set, no new step
        starts; the running ones finish.
        """
        steps = self.state.steps
        total = len(steps)
        # After a crash, steps without a durable mark may have run already: accept "done".
        allow_done = self.resumed
        pending = [i for i in range(total) if i not in self.state.done]
        failure: dict[str, Any] | None = None
        paused = False
        if self.parallelism <= 1:
            for index in pending:
                if not self._may_start():
                    paused = True
                    break
                self.journal.before(steps[index])
                failure = self._settle(self._work(index, allow_done), total)
                if failure is not None:
                    break
        else:
            running: dict[Future[_Outcome], int] = {}
            with ThreadPoolExecutor(self.parallelism, thread_name_prefix="apply") as pool:
                try:
                    for index in pending:
                        step = steps[index]
                        while running and (
                            len(running) >= self.parallelism
                            or any(_overlap(step, steps[i]) for i in running.values())
                        ):
                            failure = self._collect(running, total) or failure
                        if failure is not None:
                            break
                        if not self._may_start():
                            paused = True
                            break
                        self.journal.before(step)
                        running[pool.submit(self._work, index, allow_done)] = index
                finally:
                    while running:  # let the running steps end, and journal them
                        failure = self._collect(running, total) or failure
        if paused and failure is None:
            self.log.info("apply.paused", done=len(self.state.done), steps=total)
            raise ApplyPaused(f"plan {self.plan.plan_id} paused after {len(self.state.done)} steps")
        return failure

    def _may_start(self) -> bool:
        """Wait for the next step's slot under the cap; False once a pause was asked for."""
        self.pacer.wait(self.pause)
        return not self.pause.is_set()

    def _collect(self, running: dict[Future[_Outcome], int], total: int) -> dict[str, Any] | None:
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        failure = None
        for future in sorted(finished, key=lambda f: running[f]):
            del running[future]
            failure = self._settle(future.result(), total) or failure
        return failure

    def _settle(self, outcome: _Outcome, total: int) -> dict[str, Any] | None:
        """Journal a finished step (coordinator thread only); the failure if it failed."""
        step = self.state.steps[outcome.index]
        if outcome.error is not None:
            if outcome.started:
                self._half_run.append(outcome.index)
            return self._failure(outcome.error, outcome.index, step, started=outcome.started)
        self.journal.done(outcome.index, step)
        self.state.done.add(outcome.index)
        if self.on_step is not None:
            self.on_step(len(self.state.done), total)
        return None

    def _work(self, index: int, allow_done: bool) -> _Outcome:
        """Run one step in a worker thread; every failure comes back as a value."""
        outcome = _Outcome(index)
        try:
            self._attempt(self.state.steps[index], index, allow_done=allow_done, outcome=outcome)
        except Exception as exc:  # any failure, even a bug, ends in a rollback
            outcome.error = exc
        return outcome

    def _failure(self, exc: Exception, index: int, step: Step, *, started: bool) -> dict[str, Any]:
        if isinstance(exc, StepConflictError):
            code, message = exc.code, exc.message
        elif isinstance(exc, OSError):
            code, message = ErrorCode.IO_ERROR, str(exc)
        else:
            self.log.exception("apply.bug", step=index)
            code, message = ErrorCode.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"
        return {
            "started": started,  # False: refused by its re-check, never ran
            "half_run": sorted(self._half_run),  # failed after starting: may have half-run
            "code": code.value,
            "message": f"step {index + 1} of {len(self.state.steps)} ({step.describe()}): "
            f"{message}; everything done before it was rolled back",
            "step": index,
            "operation": step.operation,
        }

    def _attempt(
        self, step: Step, index: int, *, allow_done: bool, outcome: _Outcome | None = None
    ) -> bool:
        """Check and run one step, retrying transient errors; True when it ran now."""
        return self.retry.run(
            lambda: self._advance(step, index, allow_done=allow_done, outcome=outcome),
            # A retry may follow a half-done try: then the step may already show as done.
            lambda: self._advance(step, index, allow_done=True, outcome=outcome),
        )

    def _advance(
        self, step: Step, index: int, *, allow_done: bool, outcome: _Outcome | None = None
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
        state = self._check(step)
        if state is _State.PENDING:
            if outcome is not None:
                outcome.started = True
            self._run(step, index)
            return True
        if state is _State.DUPLICATE:
            self._drop_duplicate(step)
        return False

    def _drop_duplicate(self, step: Step) -> None:
        """A rename stopped between copy and delete: both names hold the same content."""
        assert step.src is not None
        if self.fs.sha256(step.src) != self.fs.sha256(step.dst):
            raise StepConflictError(f"{'/'.join(step.src)} and {'/'.join(step.dst)} both exist")
        self.fs.unlink(step.src)

    # -- one step ---------------------------------------------------------------------------------

    def _kind(self, parts: Parts) -> Kind | None:
        kind = self.fs.kind(parts)
        if kind is Kind.SYMLINK:
            raise StepConflictError(
                f"{'/'.join(parts)} became a symbolic link", ErrorCode.SYMLINK_REFUSED
            )
        return kind

    def _check(self, step: Step) -> _State:
        """Which of the step's pre- and postcondition holds now (raises if neither)."""
        dst = self._kind(step.dst)
        where = "/".join(step.dst)
        if step.kind == "mkdir":
            if dst is None:
                return _State.PENDING
            if dst is Kind.DIR:
                return _State.DONE
        elif step.kind == "rmdir":
            if dst is Kind.DIR:
                return _State.PENDING
            if dst is None:
                return _State.DONE
        elif step.kind == "rename":
            assert step.src is not None
            src = self._kind(step.src)
            if src is Kind.FILE and dst is None:
                return _State.PENDING
            if src is None and dst is Kind.FILE:
                return _State.DONE
            if src is Kind.FILE and dst is Kind.FILE:
                return _State.DUPLICATE
            raise StepConflictError(
                f"expected the file {'/'.join(step.src)} and no {where}; found "
                f"{src.value if src else 'nothing'} and {dst.value if dst else 'nothing'}"
            )
        elif step.kind in ("copy", "write"):
            if dst is None:
                if step.src is not None and self._kind(step.src) is not Kind.FILE:
                    raise StepConflictError(f"the file {'/'.join(step.src)} is gone")
                return _State.PENDING
            if dst is Kind.FILE:
                return _State.DONE
        elif step.kind == "unlink":
            if dst is Kind.FILE:
                return _State.PENDING
            if dst is None:
                return _State.DONE
        raise StepConflictError(f"{where} is a {dst.value if dst else 'missing item'}, unexpected")

    def _run(self, step: Step, index: int) -> None:
        fs = self.fs
        if step.dst[0] == WORK_DIR_NAME:
            fs.makedirs(step.dst[:-1])  # our own trash folders
        try:
            if step.kind == "mkdir":
                fs.mkdir(step.dst)
            elif step.kind == "rmdir":
                # Already gone is fine: on gcsfuse a folder with no placeholder object exists
                # only through its files, and vanishes with the last one moved out.
                with contextlib.suppress(FileNotFoundError, FolderMissingError):
                    fs.rmdir(step.dst)
            elif step.kind == "rename":
                assert step.src is not None
                fs.rename(step.src, step.dst)
            elif step.kind == "copy":
                assert step.src is not None
                fs.copy(step.src, step.dst, self._staging(index))
            elif step.kind == "write":
                fs.write(step.dst, step.content or b"", self._staging(index))
            elif step.kind == "unlink":
                self._unlink_created(step)
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
        return (WORK_DIR_NAME, self.plan.plan_id, "staging", f"{index}.part")

    def _unlink_created(self, step: Step) -> None:
        """Rollback of a copy or write: remove the file only if it is still what we made."""
        expected = (
            step.content_sha256()
            if step.content is not None
            else self.fs.sha256(step.src)
            if step.src is not None
            else None
        )
        if expected is None or self.fs.sha256(step.dst) != expected:
            where = "/".join(step.dst)
            raise StepConflictError(f"{where} was changed after we made it; left in place")
        self.fs.unlink(step.dst)

    # -- rollback ---------------------------------------------------------------------------------

    def _rollback(self) -> tuple[list[str], bool]:
        """Undo the steps that ran, last first.

        Returns the steps that could not be undone, and whether any of them failed for a
        passing reason (EIO...): then a later run retries the rollback. Otherwise what is
        left is final (e.g. a folder someone else put files in is kept, with their files).
        """
        steps = self.state.steps
        remaining: list[str] = []
        transient = False
        for failed in self.state.info.get("half_run", []):
            if failed in self.state.done:
                continue
            try:
                self._settle_failed_step(steps[failed], failed)
            except Exception as exc:  # unsettled, it may hold a second copy: retry later
                message = exc.message if isinstance(exc, StepConflictError) else str(exc)
                remaining.append(f"{steps[failed].describe()} (half done: {message})")
                transient = transient or _is_transient(exc)
        for index in sorted(self.state.done, reverse=True):
            if index in self.state.undone:
                continue
            inverse = steps[index].inverse()
            self.journal.before(inverse)
            try:
                self._attempt(inverse, index, allow_done=True)
            except Exception as exc:  # keep undoing the others; report this one
                message = exc.message if isinstance(exc, StepConflictError) else str(exc)
                remaining.append(f"{steps[index].describe()} (undo failed: {message})")
                transient = transient or _is_transient(exc)
                continue
            self.journal.undone(index, inverse)
            self.state.undone.add(index)
        if remaining:
            self.log.warning(
                "apply.rollback_incomplete", remaining=remaining[:20], retry_later=transient
            )
        self.log.info("apply.rolled_back", remaining=len(remaining), retry_later=transient)
        return remaining, transient

    def _settle_failed_step(self, step: Step, index: int) -> None:
        """The step that failed may have half-run; count it as done, or undo its half.

        I/O errors propagate (the rollback is then retried later); a step whose pre- and
        postcondition both fail did not change anything and is left alone.
        """
        try:
            state = self._check(step)
        except StepConflictError:
            return
        if state is _State.DONE:
            self.journal.done(index, step)
            self.state.done.add(index)
        elif state is _State.DUPLICATE:
            # The copy made by an interrupted rename; the original is still in place.
            assert step.src is not None
            if self.fs.sha256(step.src) == self.fs.sha256(step.dst):
                self.fs.unlink(step.dst)

    def _remove_empty_work_dirs(self) -> None:
        """Drop this plan's empty staging folders, and after a rollback its empty trash
        folders. An applied plan's trash stays whole: an empty folder it holds was deleted
        by the plan, and its undo puts it back."""
        top = os.path.join(self.case_dir, WORK_DIR_NAME)
        base = os.path.join(top, self.plan.plan_id)
        if os.path.islink(top) or not os.path.isdir(base) or os.path.islink(base):
            return
        trash = os.path.join(base, "trash")
        keep_trash = self.state.state is JournalPhase.APPLIED
        for dirpath, _dirnames, filenames in os.walk(base, topdown=False):
            if filenames or (keep_trash and (dirpath + os.sep).startswith(trash + os.sep)):
                continue
            try:
                os.rmdir(dirpath)
            except OSError:
                continue
        with contextlib.suppress(OSError):  # other plans' trash may still be there
            os.rmdir(top)
