"""The pull loop: streaming pull with flow control, one handler call per message, and the one
place that settles a message: ack, nack (with its reason, logged and counted here), or hold it
unsettled until an earlier plan of its case is settled (no thread waits: the message is handed
back to the worker pool when its case frees, or when it should look again).
Shutdown: stop pulling, nack what is held, let in-flight plans finish within a bound, then hand
the rest over (paused, lease released, nacked); ack nothing that is not done."""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.subscriber.scheduler import ThreadScheduler

from fileops_daemon.contract import attributes as attr
from fileops_daemon.service.approval_sweep import (
    SWEEP_AFTER_SECONDS,
    LocalWakeUp,
    SweepTurn,
    local_wakeup,
)
from fileops_daemon.service.config import Config
from fileops_daemon.service.delivery import Delivery, ReceivedMessage
from fileops_daemon.service.handler import (
    MAKE_WAY_SECONDS,
    Disposition,
    PlanHandler,
    Reason,
    Verdict,
)
from fileops_daemon.service.metrics import Metrics

__all__ = ["Consumer"]

log = structlog.get_logger("fileops.consumer")

#: How long paused plans get to release their leases and be nacked after the drain bound.
HANDOVER_SECONDS = 10.0
#: How long one message's delivery is kept alive while its plan applies.
MAX_PLAN_SECONDS = 24 * 3600
#: How long a message may be held for an earlier plan of its case before it goes back to
#: Pub/Sub (a hold costs no delivery attempt; a nack does).
MAX_HOLD_SECONDS = 3600.0


@dataclass(eq=False)
class _Held:
    """A message held unsettled, and how it is woken."""

    message: ReceivedMessage
    since: float
    case: str = ""
    timer: threading.Timer | None = None
    wake: Any = None  # the callback parked with the case's sequencer
    nack_logged: bool = False  # a delayed nack: already logged and counted


def delivery_of(message: ReceivedMessage) -> Delivery:
    return Delivery(
        data=bytes(message.data),
        attributes=dict(message.attributes),
        message_id=message.message_id,
        delivery_attempt=message.delivery_attempt or 1,
        publish_time=message.publish_time,
        ordering_key=message.ordering_key or "",
    )


class Consumer:
    """Pulls plan messages and hands each to the handler; ``start()`` / ``stop(timeout)``."""

    def __init__(
        self,
        config: Config,
        handler: PlanHandler,
        subscriber: pubsub_v1.SubscriberClient,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.handler = handler
        self.subscriber = subscriber
        self.metrics = metrics
        self._future: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight = 0
        self._held: dict[int, _Held] = {}
        self._stopping = False
        self._lock = threading.Lock()
        self._sweeps = threading.Thread(target=self._sweep, name="approval-sweeps", daemon=True)
        self._stop_sweeps = threading.Event()
        #: Held messages at most: each takes a flow-control slot, and a full window would
        #: keep out the very redelivery the held ones wait for.
        self.max_held = max(1, config.flow_max_messages - config.concurrency)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def start(self) -> None:
        flow = pubsub_v1.types.FlowControl(
            max_messages=self.config.flow_max_messages,
            max_bytes=self.config.flow_max_bytes,
            # Each extension reaches one ack deadline: a message this daemon stops extending
            # (a crash) comes back after about that long.
            min_duration_per_lease_extension=self.config.ack_deadline_seconds,
            max_duration_per_lease_extension=self.config.ack_deadline_seconds,
            # The client's default stops extending after an hour, and a longer (or paced) apply
            # would be redelivered to another daemon, bounce off our lease, and dead-letter.
            max_lease_duration=MAX_PLAN_SECONDS,
        )
        self._executor = ThreadPoolExecutor(
            max_workers=self.config.concurrency, thread_name_prefix="plan-worker"
        )
        self._future = self.subscriber.subscribe(
            self.config.subscription_path(self.config.plans_subscription),
            callback=self._on_message,
            flow_control=flow,
            scheduler=ThreadScheduler(self._executor),
            await_callbacks_on_shutdown=True,
        )
        log.info(
            "consumer.started",
            subscription=self.config.plans_subscription,
            concurrency=self.config.concurrency,
            worker=self.config.worker_id,
        )
        # Even with the policy off now: plans may have been left waiting by an earlier one.
        self._sweeps.start()

    def running(self) -> bool:
        return self._future is not None and not self._future.done()

    def stop(self, timeout: float) -> bool:
        """Stop pulling and wait for in-flight plans; True if they all finished in time.

        Held messages are nacked at once. Plans still applying after ``timeout`` are handed
        over: paused between steps, their leases released and their messages nacked, within
        HANDOVER_SECONDS more.
        """
        if self._future is None:
            return True
        log.info("consumer.draining", in_flight=self.in_flight, held=self.held, timeout=timeout)
        with self._lock:
            self._stopping = True
            held = list(self._held.values())
        self._stop_sweeps.set()
        for item in held:
            self._release(item, Reason.SHUTTING_DOWN)
        self._future.cancel()  # no new messages; undispatched ones are released unacked
        finished = threading.Event()

        def wait_for_callbacks() -> None:
            # A cancelled stream ends with an error; that is the point here.
            with contextlib.suppress(Exception):
                self._future.result()
            finished.set()

        threading.Thread(target=wait_for_callbacks, daemon=True).start()
        done = finished.wait(timeout)
        if not done:
            log.info("consumer.handing_over", in_flight=self.in_flight)
            self.handler.hand_over()
            handed_over = finished.wait(HANDOVER_SECONDS)
            log.info("consumer.handed_over", complete=handed_over, in_flight=self.in_flight)
        log.info("consumer.stopped", drained=done, in_flight=self.in_flight)
        return done

    # -- decisions whose wake-up never came ------------------------------------------------------

    def _sweep(self) -> None:
        """After the start, decisions whose wake-up never came; then, one daemon at a time
        every period, plans whose approval expired."""
        approvals = self.handler.approvals
        started_at = approvals.clock()
        if self._stop_sweeps.wait(SWEEP_AFTER_SECONDS):
            return
        self._wake_decided(started_at)
        period = approvals.policy.sweep_seconds
        turn = SweepTurn(approvals.ledger.store, self.config.worker_id, period, approvals.clock)
        while not self._stop_sweeps.wait(period):
            try:
                expired = approvals.expired() if turn.take() else []
            except Exception:  # GCS: the next period looks again
                log.warning("approval.expiry_sweep_failed", exc_info=True)
                continue
            for plan_id, case_name in expired:
                log.info("approval.expired_plan", plan_id=plan_id, case_name=case_name)
                self._wake_plan(plan_id, case_name)

    def _wake_plan(self, plan_id: str, case_name: str) -> None:
        key = self.config.signing_keys[0] if self.config.signing_keys else None
        self._submit_local(local_wakeup(plan_id, case_name, key, self._settled_local))

    def _wake_decided(self, started_at: float) -> None:
        """Handle a wake-up of our own for each plan decided before this daemon started that
        still waits (approval_sweep.py says why its own may never come)."""
        try:
            decided = self.handler.approvals.decided_before(started_at)
        except Exception:  # GCS: the wake-ups may still come; the next start looks again
            log.exception("approval.sweep_failed")
            return
        for plan_id, case_name in decided:
            log.info("approval.wakeup_missing", plan_id=plan_id, case_name=case_name)
            self._wake_plan(plan_id, case_name)

    def _submit_local(self, message: LocalWakeUp) -> None:
        with self._lock:
            executor = None if self._stopping else self._executor
        if executor is None:
            return  # stopping: the next daemon looks again
        with contextlib.suppress(RuntimeError):  # the pool is shutting down
            executor.submit(self._handle, message, time.monotonic())

    def _settled_local(self, message: LocalWakeUp, acked: bool) -> None:
        """A nacked wake-up of our own is tried again, as Pub/Sub would redeliver it."""
        if not acked and message.delivery_attempt < self.config.max_delivery_attempts:
            self._submit_local(message.again())

    # -- one message ------------------------------------------------------------------------------

    def _on_message(self, message: ReceivedMessage) -> None:
        self._handle(message, time.monotonic())

    def _handle(self, message: ReceivedMessage, since: float) -> None:
        disposition = Disposition.nack(Reason.TRANSIENT_FAULT, after=MAKE_WAY_SECONDS)
        with self._lock:
            self._in_flight += 1
        self.metrics.in_flight.inc()
        try:
            disposition = self.handler.handle(delivery_of(message))
        except Exception:
            log.exception(
                "plan.unhandled_error",
                message_id=message.message_id,
                plan_id=message.attributes.get(attr.PLAN_ID, ""),
                case_name=message.attributes.get(attr.CASE_NAME, ""),
                attempt=message.delivery_attempt,
            )
        finally:
            self._settle(message, disposition, since)
            with self._lock:
                self._in_flight -= 1
            self.metrics.in_flight.dec()

    def _settle(self, message: ReceivedMessage, disposition: Disposition, since: float) -> None:
        """The only place a message is settled: ack when answered, nack (with its reason)
        when not decided, or hold it until its case is free."""
        if disposition.verdict is Verdict.ACK:
            message.ack()
            return
        if disposition.verdict is Verdict.NACK:
            self._nack(message, disposition.reason, disposition.after)
            return
        self.metrics.waits.labels(disposition.reason.value).inc()
        if not self._hold(message, disposition, since):
            with self._lock:
                stopping = self._stopping
            self._nack(message, Reason.SHUTTING_DOWN if stopping else Reason.WAITED_TOO_LONG)

    def _nack(self, message: ReceivedMessage, reason: Reason, after: float = 0.0) -> None:
        log.info(
            "plan.nacked",
            reason=reason.value,
            message_id=message.message_id,
            plan_id=message.attributes.get(attr.PLAN_ID, ""),
            case_name=message.attributes.get(attr.CASE_NAME, ""),
            attempt=message.delivery_attempt,
        )
        self.metrics.nacks.labels(reason.value).inc()
        with self._lock:
            stopping = self._stopping
        if after <= 0 or stopping:
            message.nack()
            return
        # Not straight back: pstest redelivers at once, and the plan it makes way for needs
        # the ordering key to itself for a moment. A timer, not a sleeping worker.
        item = _Held(message, time.monotonic(), nack_logged=True)
        item.timer = threading.Timer(after, self._release, (item, reason))
        item.timer.daemon = True
        with self._lock:
            self._held[id(item)] = item
        self.metrics.waiting.inc()
        item.timer.start()

    def _hold(self, message: ReceivedMessage, disposition: Disposition, since: float) -> bool:
        """Keep ``message`` unsettled until it is woken; False if it may not be held."""
        with self._lock:
            if (
                self._stopping
                or len(self._held) >= self.max_held
                or time.monotonic() - since > MAX_HOLD_SECONDS
            ):
                return False
            item = _Held(message, since, case=disposition.case)
            self._held[id(item)] = item
        self.metrics.waiting.inc()

        def wake() -> None:
            self._wake(item)

        if disposition.case:
            item.wake = wake
            self.handler.sequencer.park(disposition.case, wake)
        if disposition.after > 0 or not disposition.case:
            item.timer = threading.Timer(max(disposition.after, 0.01), wake)
            item.timer.daemon = True
            item.timer.start()
        return True

    def _wake(self, item: _Held) -> None:
        """Hand a held message back to the worker pool (once, whoever wakes it first)."""
        with self._lock:
            if self._held.pop(id(item), None) is None or self._executor is None:
                return
            executor = self._executor
        self.metrics.waiting.dec()
        if item.timer is not None:
            item.timer.cancel()
        if item.wake is not None:
            self.handler.sequencer.unpark(item.case, item.wake)
        try:
            executor.submit(self._handle, item.message, item.since)
        except RuntimeError:  # the pool is shutting down
            self._nack(item.message, Reason.SHUTTING_DOWN)

    def _release(self, item: _Held, reason: Reason) -> None:
        """Nack a held message (its hold ended, or a delayed nack came due)."""
        with self._lock:
            if self._held.pop(id(item), None) is None:
                return  # woken or released meanwhile
        if item.timer is not None:
            item.timer.cancel()
        if item.wake is not None:
            self.handler.sequencer.unpark(item.case, item.wake)
        self.metrics.waiting.dec()
        if item.nack_logged:
            item.message.nack()
        else:
            self._nack(item.message, reason)
