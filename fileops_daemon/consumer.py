"""The pull loop: streaming pull with flow control, one handler call per message, and the one
place that decides ack or nack. Shutdown: stop pulling, let in-flight plans finish within a
bound, then hand the rest over (paused, lease released, nacked); ack nothing that is not done."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.subscriber.message import Message
from google.cloud.pubsub_v1.subscriber.scheduler import ThreadScheduler

from fileops_daemon.config import Config
from fileops_daemon.handler import Disposition, PlanHandler
from fileops_daemon.metrics import Metrics
from fileops_daemon.outputs import Delivery

__all__ = ["Consumer"]

log = structlog.get_logger("fileops.consumer")

#: How long paused plans get to release their leases and be nacked after the drain bound.
HANDOVER_SECONDS = 10.0
#: How long one message's delivery is kept alive while its plan applies.
MAX_PLAN_SECONDS = 24 * 3600


def delivery_of(message: Message) -> Delivery:
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
        self._in_flight = 0
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

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
        executor = ThreadPoolExecutor(
            max_workers=self.config.concurrency, thread_name_prefix="plan-worker"
        )
        self._future = self.subscriber.subscribe(
            self.config.subscription_path(self.config.plans_subscription),
            callback=self._on_message,
            flow_control=flow,
            scheduler=ThreadScheduler(executor),
            await_callbacks_on_shutdown=True,
        )
        log.info(
            "consumer.started",
            subscription=self.config.plans_subscription,
            concurrency=self.config.concurrency,
            worker=self.config.worker_id,
        )

    def running(self) -> bool:
        return self._future is not None and not self._future.done()

    def stop(self, timeout: float) -> bool:
        """Stop pulling and wait for in-flight plans; True if they all finished in time.

        Plans still applying after ``timeout`` are handed over: paused between steps, their
        leases released and their messages nacked, within HANDOVER_SECONDS more.
        """
        if self._future is None:
            return True
        log.info("consumer.draining", in_flight=self.in_flight, timeout=timeout)
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

    def _on_message(self, message: Message) -> None:
        disposition = Disposition.NACK
        with self._lock:
            self._in_flight += 1
        self.metrics.in_flight.inc()
        try:
            disposition = self.handler.handle(delivery_of(message))
        except Exception:
            log.exception(
                "plan.unhandled_error",
                message_id=message.message_id,
                plan_id=message.attributes.get("plan_id", ""),
                case_name=message.attributes.get("case_name", ""),
                attempt=message.delivery_attempt,
            )
        finally:
            # The only place a message is settled: ack when answered, nack otherwise.
            if disposition is Disposition.ACK:
                message.ack()
            else:
                message.nack()
            with self._lock:
                self._in_flight -= 1
            self.metrics.in_flight.dec()
