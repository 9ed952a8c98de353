"""Apply a plan: simulate, journal the steps, run them, and roll back if one fails.

Each step is re-checked right before it runs (another writer may have raced us). After a crash
the same call resumes: steps the journal does not mark are checked against the tree, and the
apply goes on (or the rollback it was doing goes on). A plan that finished returns its stored
result; the same plan_id with other content is refused.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import structlog

from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.contract.identity import describe_difference
from fileops_daemon.contract.limits import Limits
from fileops_daemon.contract.plan import Plan
from fileops_daemon.contract.results import ResultStatus, build_result, now
from fileops_daemon.core.gcpause import paused_gc
from fileops_daemon.core.journal import Journal, JournalState, SyncHook
from fileops_daemon.core.outcome import ApplyOutcome, ApplyPaused, RunEnd
from fileops_daemon.core.pacing import StepPacer
from fileops_daemon.core.paths import nfc
from fileops_daemon.core.retry import TRANSIENT_ERRNOS, RetryPolicy, is_transient
from fileops_daemon.core.run import Run
from fileops_daemon.core.run_state import ProgressCallback, RunState
from fileops_daemon.core.simulate import Simulation, simulate
from fileops_daemon.core.store import PlanStore, case_lock
from fileops_daemon.core.trust import StateInvalidError, check_journal
from fileops_daemon.core.undo import inverse_plan
from fileops_daemon.core.volume import LocalVolume, Volume

__all__ = [
    "TRANSIENT_ERRNOS",
    "Admit",
    "ApplyOutcome",
    "ApplyPaused",
    "Checkpoint",
    "ProgressCallback",
    "RetryPolicy",
    "RunEnd",
    "apply_plan",
    "dry_run",
    "idempotency_conflict",
    "plan_rejection",
]

log = structlog.get_logger("fileops.execute")


class Checkpoint(Protocol):
    """Where a daemon mirrors the journal so another machine can take the plan over."""

    def journal_created(self, header_line: bytes) -> None:
        """The steps, before the first one runs."""

    def journal_synced(self, summary: dict[str, Any]) -> None:
        """Durable progress; raising here stops the apply (e.g. the lease was lost)."""


#: The admission hook: called once a new run's simulation passed, before its journal exists and
#: so before its first change, with the simulation's ``planned`` result and the case folder's
#: name on the volume. None lets the run go on; an outcome ends it there instead (nothing is
#: changed). An exception stops the apply as any fault does (nothing changed, try again later).
Admit = Callable[[dict[str, Any], str], ApplyOutcome | None]


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


def plan_rejection(plan: Plan, error: PlanError, started: datetime, attempt: int) -> dict[str, Any]:
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
    return plan_rejection(plan, error, started, attempt)


def dry_run(
    plan: Plan,
    projects_root: str,
    *,
    limits: Limits | None = None,
    attempt: int = 1,
    volume: Volume | None = None,
    retry: RetryPolicy | None = None,
) -> ApplyOutcome:
    """Simulate only; the tree is never changed. Ends PLANNED or REJECTED.

    ``volume`` holds the case folders (default: the folder ``projects_root``). A passing
    fault while the tree is read is retried (``retry``); once the retries run out the plan
    is refused with ``io_error``."""
    started = now()

    def once() -> Simulation:
        return simulate(plan, projects_root, limits, volume=volume)

    with paused_gc():  # what the simulation and its result make all stays alive
        try:
            sim = (retry or RetryPolicy()).run(once, once)
        except OSError as exc:
            return ApplyOutcome(RunEnd.REJECTED, _io_rejection(plan, exc, started, attempt))
        end = RunEnd.PLANNED if sim.ok else RunEnd.REJECTED
        return ApplyOutcome(end, simulation_result(sim, started, attempt=attempt))


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
    volume: Volume | None = None,
    admit: Admit | None = None,
    pin_sources: bool = False,
) -> ApplyOutcome:
    """Apply (or, for a dry-run plan, simulate) ``plan``: its result document, and how the
    run ended (``RunEnd``), with the inverse plan once applied.

    ``pacer`` caps the steps started per second (shared with other applies that use it).
    Once ``pause`` is set no further step starts: the running ones finish and are journaled,
    and ApplyPaused is raised (a rollback under way is not paused: it puts the tree back).

    Exceptions raised by ``on_step`` or ``checkpoint`` stop the apply where it stands; the
    journal stays, and the next call resumes; so does it after ROLLBACK_INCOMPLETE.

    ``volume`` holds the case folders (default: the folder ``projects_root`` on this
    machine, e.g. a gcsfuse mount); the journal and results stay in ``state_dir``.

    ``admit`` (see :data:`Admit`) decides on the very simulation this run applies, under the
    plan's and the case's locks, whether it may start; a resumed run was admitted before.
    ``pin_sources``: every step acts only on the version of its source the simulation saw,
    even without an ``expect`` (a plan a person approved as shown, resumed after a crash).
    """
    started = now()
    volume = volume or LocalVolume(projects_root)
    store = PlanStore(state_dir, plan.plan_id)
    stored = store.read_result()
    if stored is not None:
        return _stored_outcome(plan, store, stored, started, attempt)
    if plan.dry_run:
        return dry_run(
            plan, projects_root, limits=limits, attempt=attempt, volume=volume, retry=retry
        )
    retry = retry or RetryPolicy()
    try:
        with store.locked(), case_lock(state_dir, nfc(plan.case_name)):
            stored = store.read_result()  # finished while we waited for the lock?
            if stored is not None:
                return _stored_outcome(plan, store, stored, started, attempt)
            run = _open_run(
                plan, volume, store, limits, started, attempt, checkpoint, retry, admit, pin_sources
            )
            if isinstance(run, ApplyOutcome):  # held by the admission hook
                return run
            if isinstance(run, dict):  # refused: nothing to run
                return ApplyOutcome(RunEnd.REJECTED, run)
            journal, progress, case_dir, resumed = run
            state = RunState(
                plan,
                store,
                journal,
                progress,
                case_dir,
                started,
                attempt,
                resumed=resumed,
                log=log.bind(plan_id=plan.plan_id, case_name=plan.case_name),
            )
            return Run(
                state,
                retry=retry,
                on_step=on_step,
                parallelism=max(1, parallelism),
                pacer=pacer or StepPacer(0),
                pause=pause or threading.Event(),
                volume=volume,
            ).execute()
    except PlanError as exc:  # busy lock
        end = RunEnd.BUSY if exc.code is ErrorCode.PLAN_BUSY else RunEnd.REJECTED
        return ApplyOutcome(end, plan_rejection(plan, exc, started, attempt))


def _stored_outcome(
    plan: Plan, store: PlanStore, stored: dict[str, Any], started: datetime, attempt: int
) -> ApplyOutcome:
    if not plan.matches_digest(stored.get("plan_digest")):
        conflict = idempotency_conflict(plan, started, attempt, recorded=stored)
        return ApplyOutcome(RunEnd.REJECTED, conflict)
    undo = store.read_undo() if stored.get("status") == ResultStatus.APPLIED else None
    return ApplyOutcome.of_stored(stored, undo)


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
    return plan_rejection(plan, error, started, attempt)


def _open_run(
    plan: Plan,
    volume: Volume,
    store: PlanStore,
    limits: Limits | None,
    started: datetime,
    attempt: int,
    checkpoint: Checkpoint | None,
    retry: RetryPolicy,
    admit: Admit | None = None,
    pin_sources: bool = False,
) -> tuple[Journal, JournalState, str, bool] | dict[str, Any] | ApplyOutcome:
    """Reopen this plan's journal (resumed: True), or simulate and start a new one.

    Returns the journal, its state, the case folder and whether it resumes; or the result
    when there is nothing to run (a refusal), or the outcome ``admit`` ended it with.
    """
    on_sync: SyncHook | None = checkpoint.journal_synced if checkpoint else None
    if store.has_journal():
        try:
            journal, state = Journal.resume(store.journal_path, on_sync)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            error = StateInvalidError(f"the journal cannot be read: {type(exc).__name__}")
            return plan_rejection(plan, error, started, attempt)
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
            return plan_rejection(plan, exc, started, attempt)
        log.info(
            "apply.resume",
            plan_id=plan.plan_id,
            case_name=plan.case_name,
            done=len(state.done),
            state=state.state,
        )
        case_dir = os.path.join(volume.root, state.header["case_folder"])
        return journal, state, case_dir, True
    with paused_gc():  # what the simulation and the journal's header make all stays alive
        return _start_run(
            plan, volume, store, limits, started, attempt, checkpoint, retry, admit, pin_sources
        )


def _start_run(
    plan: Plan,
    volume: Volume,
    store: PlanStore,
    limits: Limits | None,
    started: datetime,
    attempt: int,
    checkpoint: Checkpoint | None,
    retry: RetryPolicy,
    admit: Admit | None = None,
    pin_sources: bool = False,
) -> tuple[Journal, JournalState, str, bool] | dict[str, Any] | ApplyOutcome:
    """Simulate the plan, let ``admit`` decide on that simulation, and write its journal's
    header: the run (not resumed), or the refusal or hold when there is nothing to run."""
    on_sync: SyncHook | None = checkpoint.journal_synced if checkpoint else None
    try:
        sim = _simulate_retrying(plan, volume, limits, retry, pin_sources)
    except OSError as exc:
        if is_transient(exc):
            # Not an answer about the plan: a refusal recorded now would refuse its id for
            # good. The caller retries later (the daemon nacks the message).
            raise
        return _io_rejection(plan, exc, started, attempt)
    if not sim.ok:
        return simulation_result(sim, started, attempt=attempt)
    assert sim.case_dir is not None
    if admit is not None:
        # The decision is made on this simulation, the one the steps below come from.
        ended = admit(
            simulation_result(sim, started, attempt=attempt), os.path.basename(sim.case_dir)
        )
        if ended is not None:
            return ended
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
    plan: Plan, volume: Volume, limits: Limits | None, retry: RetryPolicy, pin: bool = False
) -> Simulation:
    """The simulation, tried again after a transient filesystem error (EIO from gcsfuse)."""

    def once() -> Simulation:
        return simulate(plan, volume.root, limits, volume=volume, pin_sources=pin)

    return retry.run(once, once)
