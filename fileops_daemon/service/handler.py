"""What one plan message becomes: check, wait its turn, claim, apply, record, answer.

Every message ends in exactly one way: ACK after its result is published and audited (and, for
an apply, recorded in the ledger), or NACK when a transient fault kept us from deciding
(Pub/Sub redelivers; the dead-letter topic catches what keeps failing). Before that it may
WAIT, held unsettled, while an earlier plan of its case goes first. The consumer settles it.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import structlog

from fileops_daemon.contract import attributes as attr
from fileops_daemon.contract.approval import WakeUp
from fileops_daemon.contract.errors import ErrorCode, PlanError, shorten
from fileops_daemon.contract.plan import Plan
from fileops_daemon.contract.results import answering, now, refusal_result, replayed
from fileops_daemon.core.execute import (
    ApplyOutcome,
    ApplyPaused,
    RetryPolicy,
    RunEnd,
    apply_plan,
    dry_run,
    idempotency_conflict,
)
from fileops_daemon.core.pacing import StepPacer
from fileops_daemon.core.paths import nfc
from fileops_daemon.core.store import PlanStore
from fileops_daemon.core.undo import UndoRequest
from fileops_daemon.core.volume import LocalVolume, Volume
from fileops_daemon.service.answering import Answerer, placeholder_plan_id, reply_attributes
from fileops_daemon.service.approval import Answer, ApprovalDesk, DecisionStore
from fileops_daemon.service.config import Config
from fileops_daemon.service.decided import ruled_delivery, with_stored_plan
from fileops_daemon.service.delivery import (
    APPROVED_DIGEST,
    REPLY_TO,
    Delivery,
)
from fileops_daemon.service.disposition import (
    BLOCKING,
    MAKE_WAY_SECONDS,
    Disposition,
    Reason,
    Verdict,
)
from fileops_daemon.service.intake import accept, check_attributes, undo_plan
from fileops_daemon.service.lease import LeaseKeeper, release_quietly, seed_local_journal
from fileops_daemon.service.ledger import (
    AWAITING_APPROVAL,
    CaseHeld,
    CaseSnapshot,
    Claimed,
    Completed,
    Conflict,
    Held,
    LeaseLostError,
    Ledger,
    Record,
)
from fileops_daemon.service.metrics import Metrics
from fileops_daemon.service.outputs import AuditSink, ResultSink
from fileops_daemon.service.replies import (
    answered_message,
    busy_answer,
    last_attempt,
)
from fileops_daemon.service.sequencer import CaseSequencer, Waiting, WaitReason

__all__ = [
    "MAKE_WAY_SECONDS",
    "Disposition",
    "PlanHandler",
    "Reason",
    "Verdict",
    "placeholder_plan_id",
]

log = structlog.get_logger("fileops.handler")


class PlanHandler:
    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        results: ResultSink,
        audit: AuditSink,
        metrics: Metrics | None = None,
        approvals: ApprovalDesk | None = None,
        volume: Volume | None = None,
    ) -> None:
        self.config = config
        # Where the case folders are: the mount (default) or the bucket through the JSON API.
        self.volume = volume or LocalVolume(config.projects_root)
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
        # Set by hand_over(): applies pause between steps (ApplyPaused) and are handed over.
        self.pause = threading.Event()
        self.sequencer = CaseSequencer()
        # Requests run here beside the plan worker's own (see _apply and answering.py): at
        # most two per plan worker at a time, so none waits for another's.
        self._background = ThreadPoolExecutor(
            max_workers=2 * max(1, config.concurrency), thread_name_prefix="beside"
        )
        self.answerer = Answerer(
            results, audit, self.metrics, config.signing_keys, self._background
        )
        # The daemon's wiring passes the real one (decisions audited in the audit bucket).
        self.approvals = approvals or ApprovalDesk(
            config.approval,
            ledger,
            DecisionStore(ledger.store),
            ledger.store,
            projects_root=config.projects_root,
            limits=config.limits,
            clock=ledger.clock,
            volume=self.volume,
        )

    def hand_over(self) -> None:
        """Shutting down with plans still applying: pause them between steps, release their
        leases and nack them, so another daemon resumes them at once instead of after the
        lease and the ack deadline run out."""
        self.pause.set()

    def handle(self, delivery: Delivery) -> Disposition:
        started = now()
        attrs = delivery.attributes
        if delivery.delivery_attempt > 1:
            self.metrics.redeliveries.inc()
        bound = log.bind(
            message_id=delivery.message_id,
            plan_id=shorten(attrs.get("plan_id", ""), 200),
            case_name=shorten(attrs.get("case_name", ""), 200),
            attempt=delivery.delivery_attempt,
        )
        try:
            message = accept(delivery, self.config)
        except PlanError as exc:
            return self._refuse(delivery, exc, started, bound)
        except Exception as exc:  # a bug while checking the message: answer, never five nacks
            bound.exception("plan.check_failed")
            error = PlanError(
                ErrorCode.INTERNAL_ERROR,
                f"the daemon could not check this message ({type(exc).__name__}); "
                "nothing was applied",
            )
            return self._refuse(delivery, error, started, bound)
        if isinstance(message, UndoRequest):
            # Built from the ledger: a GCS fault here is transient (nacked), not a refusal.
            try:
                plan = undo_plan(message, self.ledger, self.config.limits)
                check_attributes(plan, attrs)
            except PlanError as exc:
                return self._refuse(delivery, exc, started, bound)
        elif isinstance(message, WakeUp):
            ruled = self._rule(message, delivery, started, bound)
            if isinstance(ruled, Disposition):
                return ruled
            plan, delivery = ruled
        else:
            plan = message
        bound = bound.bind(plan_id=plan.plan_id, case_name=plan.case_name)
        case = nfc(plan.case_name)
        turn = self.sequencer.enter(case, plan.plan_id)
        if isinstance(turn, Waiting):
            return self._wait_for_turn(turn, delivery, bound)
        # Not straight back after a fault: without a retry backoff (the emulators ignore it)
        # the redeliveries would burn every delivery attempt within a second.
        disposition = Disposition.nack(Reason.TRANSIENT_FAULT, after=MAKE_WAY_SECONDS)
        try:
            if plan.dry_run:
                disposition = self._answer(self._dry_run(plan, started, delivery), delivery)
            else:
                disposition = self._apply(plan, started, delivery, bound)
        except Exception:
            bound.exception("plan.unhandled_error")
        finally:
            # Only a plan that may have begun blocks its case; one that merely waited did not.
            blocks = (
                disposition.verdict is Verdict.NACK
                and disposition.reason in BLOCKING
                and delivery.delivery_attempt < self.config.max_delivery_attempts
            )
            wake = self.sequencer.leave(turn, blocks=blocks)
            for waiter in wake:
                waiter()
        return disposition

    def _wait_for_turn(self, turn: Waiting, delivery: Delivery, bound: Any) -> Disposition:
        """An earlier plan of the case comes first."""
        if turn.reason is WaitReason.CASE_BUSY:
            return self._wait(
                Reason.CASE_BUSY, delivery, bound, case=turn.case, for_plan=turn.by_plan
            )
        return self._wait(
            Reason.CASE_BLOCKED,
            delivery,
            bound,
            case=turn.case,
            after=self._recheck,
            for_plan=turn.by_plan,
        )

    def _wait(
        self,
        reason: Reason,
        delivery: Delivery,
        bound: Any,
        *,
        case: str = "",
        after: float = 0.0,
        **why: Any,
    ) -> Disposition:
        """Say why the plan waits, then hold the message (no thread waits), or nack it if it
        has an ordering key.

        Pub/Sub keeps an ordering key's messages behind the one out: holding a keyed message
        could keep back the very plan it waits for, so it makes way instead (nacked after a
        pause, which costs a delivery attempt). Two plans of one key never meet here, as the
        client library hands over a key's next message only after the previous one settles;
        they only do under different keys for one case.
        """
        bound.info("plan.waiting", reason=reason.value, **why)
        if delivery.ordering_key and reason is not Reason.CASE_BUSY:
            return Disposition.nack(reason, after=max(MAKE_WAY_SECONDS, after))
        return Disposition.wait(reason, case=case, after=after)

    @property
    def _recheck(self) -> float:
        """How often a plan waiting on another daemon looks again."""
        return max(1.0, min(10.0, self.config.lease_seconds / 10))

    def _rule(
        self, wakeup: WakeUp, delivery: Delivery, started: Any, bound: Any
    ) -> Disposition | tuple[Plan, Delivery]:
        """An approval wake-up: answer it, or the approved plan to apply and the delivery
        that routes its result to the plan's submitter."""
        bound = bound.bind(plan_id=wakeup.approval_of)
        try:
            ruling = self.approvals.rule(wakeup, started, delivery.delivery_attempt)
        except PlanError as exc:  # no valid decision: refused, the plan is left waiting
            return self._refuse(delivery, exc, started, bound)
        except Exception:  # GCS, or a decision raced: look again on the redelivery
            bound.exception("approval.rule_failed")
            return Disposition.nack(Reason.TRANSIENT_FAULT, after=MAKE_WAY_SECONDS)
        routed = ruled_delivery(ruling, delivery)
        if isinstance(ruling, Answer):
            return self._answer(ruling.result, routed)
        return ruling.plan, routed

    def _refuse(
        self, delivery: Delivery, error: PlanError, started: Any, bound: Any
    ) -> Disposition:
        self.answerer.refuse(delivery, error, started, bound)
        return Disposition.ack()

    def _answer(self, result: dict[str, Any], delivery: Delivery) -> Disposition:
        """Audit and publish; only then is the message done (acked)."""
        self.answerer.answer(result, delivery)
        return Disposition.ack()

    def _dry_run(self, plan: Plan, started: Any, delivery: Delivery) -> dict[str, Any]:
        record = self.ledger.read(plan.plan_id)
        if record is not None and not plan.matches_digest(record.digest):
            return idempotency_conflict(
                plan, started, delivery.delivery_attempt, recorded=_recorded(record)
            )
        if record is not None and record.state == "done" and record.result is not None:
            return replayed(record.result, delivery.message_id)
        try:
            return dry_run(
                plan,
                self.volume.root,
                limits=self.config.limits,
                attempt=delivery.delivery_attempt,
                volume=self.volume,
            ).result
        except Exception as exc:  # a bug in the simulation: the plan is refused, not retried
            log.exception("plan.check_failed", plan_id=plan.plan_id, case_name=plan.case_name)
            error = PlanError(
                ErrorCode.INTERNAL_ERROR,
                f"the dry run failed ({type(exc).__name__}); nothing was changed",
            )
            return refusal_result(
                {"plan_id": plan.plan_id, "case_name": plan.case_name},
                error,
                started,
                attempt=delivery.delivery_attempt,
            )

    def _apply(self, plan: Plan, started: Any, delivery: Delivery, bound: Any) -> Disposition:
        case_name = nfc(plan.case_name)
        # The case lease is read beside the plan's record: two independent reads, one wait.
        # (acquire_case acts on it as on any read: its write names the generation it saw.)
        case_seen = self._background.submit(self.ledger.read_case, case_name)
        known = self.ledger.read(plan.plan_id)
        if known is not None and not plan.matches_digest(known.digest):
            result = idempotency_conflict(
                plan, started, delivery.delivery_attempt, recorded=_recorded(known)
            )
            return self._answer(result, delivery)
        if known is not None and known.state == "done" and known.result is not None:
            return self._answer_again(known, delivery, bound)
        # A verified decision approved this very plan (the gate checks it again before the
        # first change); anything else that meets a waiting plan is answered that it waits.
        approved = delivery.extra.get(APPROVED_DIGEST) == plan.digest
        if not approved and known is not None and known.state == AWAITING_APPROVAL:
            waiting = self.approvals.still_waiting(known, started, delivery.delivery_attempt)
            return self._answer(waiting, with_stored_plan(known, delivery))
        case = self.ledger.acquire_case(case_name, plan.plan_id, _seen(case_seen))
        if isinstance(case, CaseHeld) and last_attempt(delivery, self.config.max_delivery_attempts):
            busy = busy_answer(
                plan, started, delivery.delivery_attempt, holder=case.plan_id, owner=case.owner
            )
            return self._answer(busy, delivery)
        if isinstance(case, CaseHeld):
            return self._wait(
                Reason.CASE_HELD_ELSEWHERE,
                delivery,
                bound,
                after=self._recheck,
                for_plan=case.plan_id,
                owner=case.owner,
                holder=case.why,
            )
        if case.taken_from is not None:
            bound.warning("case.taken_from_abandoned_plan", abandoned_plan=case.taken_from)
        outcome = self.ledger.claim(
            plan.plan_id, plan.digest, plan.case_name, known, approved=approved
        )
        if isinstance(outcome, Conflict) and plan.matches_digest(outcome.record.digest):
            # Recorded by an earlier version, under the digest of the time: the same plan.
            digest = outcome.record.digest
            outcome = self.ledger.claim(plan.plan_id, digest, plan.case_name, outcome.record)
        if isinstance(outcome, Conflict):
            result = idempotency_conflict(
                plan, started, delivery.delivery_attempt, recorded=_recorded(outcome.record)
            )
            return self._answer(result, delivery)
        if isinstance(outcome, Completed):
            return self._answer_again(outcome.record, delivery, bound)
        if isinstance(outcome, Held) and last_attempt(delivery, self.config.max_delivery_attempts):
            busy = busy_answer(
                plan,
                started,
                delivery.delivery_attempt,
                holder=plan.plan_id,
                owner=outcome.record.owner,
            )
            return self._answer(busy, delivery)
        if isinstance(outcome, Held):
            # A duplicate delivery while another daemon applies it: its result will come.
            return self._wait(
                Reason.PLAN_HELD_ELSEWHERE,
                delivery,
                bound,
                after=self._recheck,
                owner=outcome.record.owner,
            )
        return self._run_claimed(plan, outcome, started, delivery, bound)

    def _client_of(self, delivery: Delivery) -> str:
        """Whom this plan's answers go to if it has to wait for a decision."""
        if REPLY_TO in delivery.extra:
            return str(delivery.extra[REPLY_TO])
        return reply_attributes(delivery, self.config.signing_keys).get(attr.CLIENT_ID, "")

    def _answer_again(self, record: Record, delivery: Delivery, bound: Any) -> Disposition:
        """A plan already finished: answer with its recorded result."""
        assert record.result is not None
        bound.info("plan.redelivered", status=record.result.get("status"))
        if delivery.delivery_attempt <= 1:  # a second message for a finished plan
            self.metrics.redeliveries.inc()
        return self._answer(replayed(record.result, delivery.message_id), delivery)

    def _run_claimed(
        self, plan: Plan, outcome: Claimed, started: Any, delivery: Delivery, bound: Any
    ) -> Disposition:
        if outcome.previous_owner is not None and not outcome.takeover:
            bound.info("lease.resumed", progress=outcome.record.progress)
        store = PlanStore(self.config.state_dir, plan.plan_id)
        try:
            if outcome.takeover:
                bound.warning(
                    "lease.takeover",
                    previous_owner=outcome.previous_owner,
                    progress=outcome.record.progress,
                )
                self.metrics.lease_takeovers.inc()
                seed_local_journal(self.ledger, store, outcome.record, bound)
            store.write_epoch(outcome.record.attempts)
        except PlanError as exc:  # a crafted checkpoint: refused, nothing touched
            bound.error("plan.state_invalid", error=exc.message)
            refused = refusal_result(plan.document, exc, started)
            self.ledger.complete(outcome.record, refused)
            return self._answer(refused, delivery)
        except Exception:
            release_quietly(self.ledger, outcome.record)  # a fault: the redelivery resumes
            raise
        begun = time.monotonic()
        bound.info("plan.applying", owner=self.config.worker_id)
        keeper = LeaseKeeper(self.ledger, outcome.record, self.config.lease_seconds / 3)
        client = self._client_of(delivery)
        attempt = delivery.delivery_attempt

        message = answered_message(delivery)

        def admit(simulated: dict[str, Any], case_folder: str) -> ApplyOutcome | None:
            return self.approvals.gate.admit(
                plan, keeper, (client, message), simulated, case_folder, started, attempt
            )

        try:
            with keeper:  # gives the lease back if the apply is paused or fails
                ended = apply_plan(
                    plan,
                    self.volume.root,
                    self.config.state_dir,
                    limits=self.config.limits,
                    retry=self.step_retry,
                    on_step=keeper.on_step,
                    checkpoint=keeper,
                    parallelism=self.config.apply_parallelism,
                    pacer=self.pacer,
                    pause=self.pause,
                    attempt=delivery.delivery_attempt,
                    volume=self.volume,
                    admit=admit,
                    pin_sources=outcome.record.approval is not None,  # act on what was shown
                )
        except LeaseLostError:
            bound.warning("lease.lost")
            return Disposition.nack(Reason.LEASE_LOST)
        except ApplyPaused:
            bound.info("plan.handed_over", progress=keeper.record.progress)
            return Disposition.nack(Reason.HANDED_OVER)
        except OSError as exc:  # transient (EIO...) before the first step: try again later
            bound.warning("plan.transient_fault", error=f"{type(exc).__name__}: {exc}")
            return Disposition.nack(Reason.TRANSIENT_FAULT, after=MAKE_WAY_SECONDS)
        if ended.end is RunEnd.HELD:  # recorded awaiting a decision: nothing was changed
            return self._answer(ended.result, delivery)
        self.metrics.apply_seconds.observe(time.monotonic() - begun)
        if ended.end is RunEnd.APPLIED:
            self.metrics.steps_applied.inc(ended.steps_done)
        if ended.end is RunEnd.ROLLBACK_INCOMPLETE:
            # The rollback could not finish (the mount keeps failing): try again later.
            bound.error("plan.rollback_incomplete", remaining=len(ended.remaining))
            keeper.release()
            return Disposition.nack(Reason.ROLLBACK_INCOMPLETE)
        if ended.end is RunEnd.BUSY:
            # Another process on this machine (a local `fileops apply`) holds the case.
            keeper.release()
            return self._wait(Reason.PLAN_BUSY_LOCALLY, delivery, bound, after=self._recheck)
        # The message it answers (the plan's own, for an approved plan), so a redelivery of
        # that message is no replay.
        result = answering(ended.result, answered_message(delivery))
        try:
            keeper.complete(result, ended.undo)
        except LeaseLostError:
            # Taken over after our last step: the new owner resumes and answers. (The final
            # checkpoint rides on this write, so this is where such a loss now shows.)
            bound.warning("lease.lost")
            return Disposition.nack(Reason.LEASE_LOST)
        except Exception:
            keeper.release()  # not recorded (GCS is down): the redelivery records it
            raise
        return self._answer(result, delivery)


def _seen(read: Future[CaseSnapshot]) -> CaseSnapshot | None:
    """The case lease read beside the plan's record; None (read it again, and meet the fault
    there) if that read failed."""
    try:
        return read.result()
    except Exception:
        return None


def _recorded(record: Record) -> dict[str, Any]:
    """What a ledger record shows of the plan it holds, for saying what a conflict differs in:
    its result once it has one, else its case."""
    return record.result if record.result is not None else {"case_name": record.case_name}
