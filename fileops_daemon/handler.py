"""What one plan message becomes: claim, check, apply, record, answer. The consumer acks.

Every message ends in exactly one of two ways: ACK after its result is published and audited
(and, for an apply, recorded in the ledger), or NACK when a transient fault kept us from
deciding (Pub/Sub redelivers; the dead-letter topic catches what keeps failing).
"""

from __future__ import annotations

import enum
import json
import threading
import time
from typing import Any

import structlog

from fileops_daemon.config import Config
from fileops_daemon.errors import ErrorCode, PlanError
from fileops_daemon.execute import (
    ApplyPaused,
    RetryPolicy,
    apply_plan,
    dry_run,
    idempotency_conflict,
)
from fileops_daemon.journal import Journal
from fileops_daemon.ledger import (
    Claimed,
    Completed,
    Conflict,
    Held,
    LeaseLostError,
    Ledger,
    Record,
)
from fileops_daemon.metrics import Metrics
from fileops_daemon.outputs import AuditLog, Delivery, ResultPublisher
from fileops_daemon.pacing import StepPacer
from fileops_daemon.plan import Plan
from fileops_daemon.results import now, refusal_result
from fileops_daemon.signing import verify
from fileops_daemon.store import PlanStore
from fileops_daemon.undo import UndoRequest, build_undo_plan, parse_message

__all__ = ["REPLY_ATTRIBUTE", "Disposition", "LeaseKeeper", "PlanHandler"]

#: Attribute a client sets on its plans; the daemon copies it onto their results.
REPLY_ATTRIBUTE = "client_id"

log = structlog.get_logger("fileops.handler")


class Disposition(enum.Enum):
    ACK = "ack"
    NACK = "nack"


class LeaseKeeper:
    """Keeps a claimed plan's lease alive and mirrors the journal to the ledger.

    Renews from a thread every third of the lease, and on every journal sync (with the
    progress). Each write names the generation it read: if another daemon took the plan over,
    the write fails, ``lost`` is set, and the next step raises LeaseLostError.
    """

    def __init__(self, ledger: Ledger, record: Record, interval: float) -> None:
        self.ledger = ledger
        self.record = record
        self.interval = interval
        self.lost = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._progress: dict[str, Any] = dict(record.progress)
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._renew()
            except LeaseLostError:
                return
            except Exception:  # a transient GCS fault: the next beat tries again
                log.warning(
                    "lease.renew_failed",
                    plan_id=self.record.plan_id,
                    case_name=self.record.case_name,
                    exc_info=True,
                )

    def _renew(self, **progress: Any) -> None:
        with self._lock:
            if self.lost.is_set():
                raise LeaseLostError(f"plan {self.record.plan_id} was taken over")
            self._progress.update(progress)
            try:
                self.record = self.ledger.renew(self.record, dict(self._progress))
            except LeaseLostError:
                self.lost.set()
                raise

    # -- the executor's hooks -------------------------------------------------------------------

    def journal_created(self, header_line: bytes) -> None:
        self.ledger.save_journal(self.record.plan_id, header_line)

    def journal_synced(self, summary: dict[str, Any]) -> None:
        # The epoch says which claim wrote this checkpoint: a takeover compares it with its
        # own local journal's to resume from the newer one.
        self._renew(**summary, epoch=self.record.attempts)

    def on_step(self, done: int, total: int) -> None:
        if self.lost.is_set():
            raise LeaseLostError(f"plan {self.record.plan_id} was taken over")
        with self._lock:
            self._progress.update(steps_done=done, steps_total=total)


class PlanHandler:
    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        results: ResultPublisher,
        audit: AuditLog,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.ledger = ledger
        self.results = results
        self.audit = audit
        self.step_retry = RetryPolicy(
            attempts=config.retry_attempts,
            initial_wait=config.retry_initial_wait,
            max_wait=config.retry_max_wait,
        )
        # One pacer for the whole daemon: the cap is on the load all plans put on the bucket.
        self.pacer = StepPacer(config.apply_max_steps_per_second)
        self.handing_over = threading.Event()

    def hand_over(self) -> None:
        """Shutting down with plans still applying: pause them between steps, release their
        leases and nack them, so another daemon resumes them at once instead of after the
        lease and the ack deadline run out."""
        self.handing_over.set()

    def handle(self, delivery: Delivery) -> Disposition:
        started = now()
        attrs = delivery.attributes
        if delivery.delivery_attempt > 1:
            self.metrics.redeliveries.inc()
        bound = log.bind(
            message_id=delivery.message_id,
            plan_id=attrs.get("plan_id", ""),
            case_name=attrs.get("case_name", ""),
            attempt=delivery.delivery_attempt,
        )
        try:
            if self.config.signing_keys:  # before parsing: forged plans get no further
                verify(self.config.signing_keys, delivery.data, attrs)
            message = parse_message(delivery.data, self.config.limits)
            plan = self._undo_plan(message) if isinstance(message, UndoRequest) else message
            _check_attributes(plan, attrs)
        except PlanError as exc:
            result = _refusal(delivery, exc, started)
            bound.bind(plan_id=result["plan_id"], case_name=result["case_name"]).warning(
                "plan.rejected", code=exc.code.value, error=exc.message
            )
            return self._answer(result, delivery)
        bound = bound.bind(plan_id=plan.plan_id, case_name=plan.case_name)
        if plan.dry_run:
            return self._answer(self._dry_run(plan, started, delivery), delivery)
        return self._apply(plan, started, delivery, bound)

    def _undo_plan(self, request: UndoRequest) -> Plan:
        """The undo plan of ``request.undo_of``, built from the inverse this daemon stored."""
        record = self.ledger.read(request.undo_of)
        if record is None or record.state != "done" or record.undo is None:
            raise PlanError(
                ErrorCode.UNDO_UNAVAILABLE,
                f"no inverse plan is recorded for {request.undo_of!r} (not applied, or unknown)",
            )
        if request.case_name is not None and request.case_name != record.case_name:
            raise PlanError(
                ErrorCode.SCHEMA_VIOLATION,
                f"plan {request.undo_of!r} was applied to {record.case_name!r}, "
                f"not {request.case_name!r}",
            )
        return build_undo_plan(
            request.undo_of,
            record.undo,
            record.case_name,
            dry_run=request.dry_run,
            limits=self.config.limits,
        )

    # -- outcomes -------------------------------------------------------------------------------

    def _answer(self, result: dict[str, Any], delivery: Delivery) -> Disposition:
        """Audit, publish, log; only then is the message done."""
        self.audit.write(result, delivery)
        # An agent's client tags its plans; the tag routes the result to its subscription.
        reply = (
            {REPLY_ATTRIBUTE: delivery.attributes[REPLY_ATTRIBUTE]}
            if (REPLY_ATTRIBUTE in delivery.attributes)
            else {}
        )
        self.results.publish(result, reply)
        self.metrics.plans.labels(result["status"], str(result["dry_run"]).lower()).inc()
        log.info(
            "plan.answered",
            plan_id=result["plan_id"],
            case_name=result["case_name"],
            status=result["status"],
            dry_run=result["dry_run"],
            changes=len(result["changes"]),
            errors=[error["code"] for error in result["errors"]],
            message_id=delivery.message_id,
        )
        return Disposition.ACK

    def _dry_run(self, plan: Plan, started: Any, delivery: Delivery) -> dict[str, Any]:
        record = self.ledger.read(plan.plan_id)
        if record is not None and record.digest != plan.digest:
            return idempotency_conflict(plan, started, delivery.delivery_attempt)
        if record is not None and record.state == "done" and record.result is not None:
            return record.result
        return dry_run(
            plan,
            self.config.projects_root,
            limits=self.config.limits,
            attempt=delivery.delivery_attempt,
        )

    def _apply(self, plan: Plan, started: Any, delivery: Delivery, bound: Any) -> Disposition:
        deadline = time.monotonic() + self.config.lease_seconds + 5
        while True:
            outcome = self.ledger.claim(plan.plan_id, plan.digest, plan.case_name)
            if isinstance(outcome, Conflict):
                result = idempotency_conflict(plan, started, delivery.delivery_attempt)
                return self._answer(result, delivery)
            if isinstance(outcome, Completed):
                bound.info("plan.redelivered", status=(outcome.record.result or {}).get("status"))
                if delivery.delivery_attempt <= 1:  # a second message for a finished plan
                    self.metrics.redeliveries.inc()
                assert outcome.record.result is not None
                return self._answer(outcome.record.result, delivery)
            if isinstance(outcome, Claimed):
                break
            assert isinstance(outcome, Held)
            # Another daemon holds a live lease: wait for its outcome, or for its lease to end
            # (not while shutting down: the message goes back at once).
            if time.monotonic() > deadline or self.handing_over.is_set():
                bound.info("plan.held_elsewhere", owner=outcome.record.owner)
                return Disposition.NACK
            self.handing_over.wait(min(1.0, self.config.lease_seconds / 10))
        if outcome.takeover:
            bound.warning(
                "lease.takeover",
                previous_owner=outcome.previous_owner,
                progress=outcome.record.progress,
            )
            self.metrics.lease_takeovers.inc()
            try:
                self._seed_local_journal(plan, outcome.record, bound)
            except PlanError as exc:  # a crafted checkpoint: refused, nothing touched
                bound.error("plan.state_invalid", error=exc.message)
                refused = refusal_result(plan.document, exc, started)
                self.ledger.complete(outcome.record, refused)
                return self._answer(refused, delivery)
        PlanStore(self.config.state_dir, plan.plan_id).write_epoch(outcome.record.attempts)
        begun = time.monotonic()
        paused = False
        with LeaseKeeper(self.ledger, outcome.record, self.config.lease_seconds / 3) as keeper:
            try:
                result = apply_plan(
                    plan,
                    self.config.projects_root,
                    self.config.state_dir,
                    limits=self.config.limits,
                    retry=self.step_retry,
                    on_step=keeper.on_step,
                    checkpoint=keeper,
                    parallelism=self.config.apply_parallelism,
                    pacer=self.pacer,
                    pause=self.handing_over,
                    attempt=delivery.delivery_attempt,
                )
            except LeaseLostError:
                bound.warning("lease.lost")
                return Disposition.NACK
            except ApplyPaused:
                paused = True  # release the lease once the keeper has stopped renewing it
            except OSError as exc:  # transient (EIO...) before the first step: try again later
                bound.warning("plan.transient_fault", error=f"{type(exc).__name__}: {exc}")
                paused = True
        if paused:
            try:
                self.ledger.release(keeper.record)
            except Exception as exc:  # the lease then runs out on its own: slower, still safe
                bound.warning("lease.release_failed", error=f"{type(exc).__name__}: {exc}")
            bound.info("plan.handed_over", progress=keeper.record.progress)
            return Disposition.NACK
        self.metrics.apply_seconds.observe(time.monotonic() - begun)
        if result["status"] == "applied":
            self.metrics.steps_applied.inc(result.get("steps", 0))
        store = PlanStore(self.config.state_dir, plan.plan_id)
        if result["status"] == "failed" and store.read_result() is None:
            # The rollback could not finish (the mount keeps failing): try again later.
            bound.error("plan.rollback_incomplete", remaining=len(result["remaining"]))
            return Disposition.NACK
        if result["status"] == "rejected" and result["errors"][0]["code"] == "plan_busy":
            return Disposition.NACK
        undo = None
        if result["status"] == "applied":
            undo = store.read_undo()
        self.ledger.complete(keeper.record, result, undo)
        return self._answer(result, delivery)

    def _seed_local_journal(self, plan: Plan, record: Record, bound: Any) -> None:
        """A takeover: rebuild the journal from the ledger unless this machine has it, or
        the ledger's checkpoint is newer (written by a later claim than our journal's: the
        plan went on elsewhere after we handed it over). The journal is checked when the
        apply resumes it (StateInvalidError here for malformed progress)."""
        store = PlanStore(self.config.state_dir, plan.plan_id)
        if store.has_journal():
            theirs, ours = record.progress.get("epoch"), store.read_epoch()
            if type(theirs) is not int or (ours is not None and theirs <= ours):
                return
            bound.warning("journal.superseded", local_epoch=ours, checkpoint_epoch=theirs)
        header = self.ledger.load_journal(plan.plan_id)
        if header is None:
            return  # the previous owner died before its first step: start afresh
        store.ensure()
        Journal.seed(store.journal_path, header, record.progress)


def _check_attributes(plan: Plan, attributes: dict[str, str]) -> None:
    """Attributes route and filter messages; they must not disagree with the plan."""
    for name, value in (("plan_id", plan.plan_id), ("case_name", plan.case_name)):
        given = attributes.get(name)
        if given is not None and given != value:
            raise PlanError(
                ErrorCode.SCHEMA_VIOLATION,
                f"message attribute {name}={given!r} disagrees with the plan's {value!r}",
            )


def _refusal(delivery: Delivery, error: PlanError, started: Any) -> dict[str, Any]:
    try:
        document = json.loads(delivery.data)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        document = {}
    for name in ("plan_id", "case_name"):
        if not isinstance(document.get(name), str) and name in delivery.attributes:
            document[name] = delivery.attributes[name]
    return refusal_result(document, error, started, attempt=delivery.delivery_attempt)
