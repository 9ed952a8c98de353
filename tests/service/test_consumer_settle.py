"""The consumer's settle table without Pub/Sub: each Disposition the handler returns ends in
exactly one ack or nack of the message (now, after a pause, or after a hold), counted once by
reason.

Messages are the test's own ReceivedMessage; the handler is scripted and keeps a real
CaseSequencer. The messages enter through ``_on_message``, the callback the Pub/Sub client
calls from the consumer's worker pool, which the fixture opens as ``start()`` would. What
``start()`` and ``stop()`` do with the streaming pull itself is the emulator suites' job
(tests/service/test_daemon.py: drain, hand-over)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from fileops_daemon.contract.approval import wakeup_document
from fileops_daemon.contract.signing import verify
from fileops_daemon.service import consumer as consumer_module
from fileops_daemon.service.config import Config
from fileops_daemon.service.consumer import Consumer
from fileops_daemon.service.delivery import Delivery
from fileops_daemon.service.handler import MAKE_WAY_SECONDS, Disposition, Reason
from fileops_daemon.service.metrics import Metrics
from fileops_daemon.service.sequencer import Admitted, CaseSequencer

CASE = "Case-A"


@dataclass(eq=False)
class Message:
    """A received message that remembers how it was settled."""

    message_id: str
    data: bytes = b"{}"
    attributes: dict[str, str] = field(default_factory=dict)
    delivery_attempt: int | None = 1
    publish_time: datetime | None = None
    ordering_key: str | None = ""
    settled: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def ack(self) -> None:
        self.settled.append("ack")
        self.done.set()

    def nack(self) -> None:
        self.settled.append("nack")
        self.done.set()

    def wait(self, seconds: float = 5.0) -> list[str]:
        assert self.done.wait(seconds), f"{self.message_id} was not settled in {seconds} s"
        return self.settled


Script = Callable[[Delivery, int], Disposition]


class ScriptedHandler:
    """Answers each delivery as ``script`` says (given the delivery and how many times this
    message was handled before), and counts the calls."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.sequencer = CaseSequencer()
        self.calls: dict[str, int] = {}
        self.handed_over = False
        self._lock = threading.Lock()

    def handle(self, delivery: Delivery) -> Disposition:
        with self._lock:
            seen = self.calls.get(delivery.message_id, 0)
            self.calls[delivery.message_id] = seen + 1
        return self.script(delivery, seen)

    def hand_over(self) -> None:
        self.handed_over = True


@dataclass
class Rig:
    consumer: Consumer
    handler: ScriptedHandler
    metrics: Metrics

    def drain(self) -> None:
        """Wait until every message handed back to the worker pool has been handled."""
        assert self.consumer._executor is not None
        self.consumer._executor.shutdown(wait=True)

    def receive(self, message: Message) -> Message:
        self.consumer._on_message(message)
        return message

    def nacks(self, reason: Reason) -> float:
        value = self.metrics.registry.get_sample_value(
            "fileops_nacks_total", {"reason": reason.value}
        )
        return value or 0.0

    def waits(self, reason: Reason) -> float:
        value = self.metrics.registry.get_sample_value(
            "fileops_plan_waits_total", {"reason": reason.value}
        )
        return value or 0.0


@pytest.fixture
def make_rig() -> Iterator[Callable[..., Rig]]:
    pools: list[ThreadPoolExecutor] = []

    def make(
        script: Script, *, flow_max_messages: int = 8, concurrency: int = 2, **settings: Any
    ) -> Rig:
        config = Config(
            project="unit",
            state_bucket="unused",
            audit_bucket="unused",
            flow_max_messages=flow_max_messages,
            concurrency=concurrency,
            **settings,
        )
        handler = ScriptedHandler(script)
        metrics = Metrics()
        consumer = Consumer(config, handler, subscriber=None, metrics=metrics)  # type: ignore[arg-type]
        # start() opens this pool for the Pub/Sub client's scheduler; woken messages go back
        # to it.
        consumer._executor = ThreadPoolExecutor(max_workers=concurrency)
        pools.append(consumer._executor)
        return Rig(consumer, handler, metrics)

    yield make
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


def always(disposition: Disposition) -> Script:
    return lambda delivery, seen: disposition


def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


class TestAckAndNack:
    def test_an_answered_plan_is_acked_once(self, make_rig: Callable[..., Rig]) -> None:
        rig = make_rig(always(Disposition.ack()))
        message = rig.receive(Message("m-1", attributes={"plan_id": "p-1"}))
        assert message.settled == ["ack"]
        assert rig.consumer.in_flight == 0 and rig.consumer.held == 0
        assert rig.metrics.registry.get_sample_value("fileops_plans_in_flight") == 0

    @pytest.mark.parametrize("reason", [Reason.LEASE_LOST, Reason.HANDED_OVER])
    def test_a_nack_without_a_pause_is_sent_at_once_and_counted_by_reason(
        self, make_rig: Callable[..., Rig], reason: Reason
    ) -> None:
        rig = make_rig(always(Disposition.nack(reason)))
        message = rig.receive(Message("m-1"))
        assert message.settled == ["nack"]
        assert rig.nacks(reason) == 1 and rig.consumer.held == 0

    def test_a_nack_after_a_pause_holds_the_message_then_nacks_it_once(
        self, make_rig: Callable[..., Rig]
    ) -> None:
        rig = make_rig(always(Disposition.nack(Reason.CASE_HELD_ELSEWHERE, after=0.1)))
        message = rig.receive(Message("m-1"))
        assert message.settled == [] and rig.consumer.held == 1
        assert rig.nacks(Reason.CASE_HELD_ELSEWHERE) == 1  # counted when decided
        assert message.wait() == ["nack"]
        eventually(lambda: rig.consumer.held == 0)
        assert rig.nacks(Reason.CASE_HELD_ELSEWHERE) == 1
        assert rig.handler.calls == {"m-1": 1}

    def test_a_handler_that_raises_is_nacked_as_a_transient_fault_after_a_pause(
        self, make_rig: Callable[..., Rig]
    ) -> None:
        def broken(delivery: Delivery, seen: int) -> Disposition:
            raise RuntimeError("a bug")

        rig = make_rig(broken)
        started = time.monotonic()
        message = rig.receive(Message("m-1"))
        assert message.settled == [] and rig.consumer.held == 1
        assert message.wait(MAKE_WAY_SECONDS + 5) == ["nack"]
        assert time.monotonic() - started >= MAKE_WAY_SECONDS * 0.9
        assert rig.nacks(Reason.TRANSIENT_FAULT) == 1
        assert rig.consumer.in_flight == 0

    def test_the_delivery_carries_what_the_message_says(self, make_rig: Callable[..., Rig]) -> None:
        seen: list[Delivery] = []

        def record(delivery: Delivery, count: int) -> Disposition:
            seen.append(delivery)
            return Disposition.ack()

        rig = make_rig(record)
        rig.receive(
            Message(
                "m-9",
                data=b'{"x":1}',
                attributes={"plan_id": "p-9"},
                delivery_attempt=None,  # the subscription has no dead-letter policy
                ordering_key=None,
            )
        )
        [delivery] = seen
        assert (delivery.message_id, delivery.data, delivery.attributes) == (
            "m-9",
            b'{"x":1}',
            {"plan_id": "p-9"},
        )
        assert (delivery.delivery_attempt, delivery.ordering_key) == (1, "")


class TestHolding:
    def test_a_plan_waiting_for_its_case_is_handled_again_when_the_case_frees(
        self, make_rig: Callable[..., Rig]
    ) -> None:
        def script(delivery: Delivery, seen: int) -> Disposition:
            if seen == 0:
                return Disposition.wait(Reason.CASE_BUSY, case=CASE)
            return Disposition.ack()

        rig = make_rig(script)
        running = rig.handler.sequencer.enter(CASE, "p-running")
        assert isinstance(running, Admitted)
        message = rig.receive(Message("m-1"))
        assert message.settled == [] and rig.consumer.held == 1
        assert rig.waits(Reason.CASE_BUSY) == 1
        for wake in rig.handler.sequencer.leave(running, blocks=False):
            wake()
        assert message.wait() == ["ack"]
        assert rig.handler.calls == {"m-1": 2} and rig.consumer.held == 0

    def test_a_plan_waiting_on_another_daemon_looks_again_after_its_pause(
        self, make_rig: Callable[..., Rig]
    ) -> None:
        def script(delivery: Delivery, seen: int) -> Disposition:
            if seen < 2:
                return Disposition.wait(Reason.PLAN_HELD_ELSEWHERE, after=0.05)
            return Disposition.ack()

        rig = make_rig(script)
        message = rig.receive(Message("m-1"))
        assert message.wait() == ["ack"]
        assert rig.handler.calls == {"m-1": 3}
        assert rig.waits(Reason.PLAN_HELD_ELSEWHERE) == 2

    def test_a_message_woken_twice_at_once_is_handled_once_more_not_twice(
        self, make_rig: Callable[..., Rig]
    ) -> None:
        """Its case frees as its timer fires: whichever wakes it first hands it back."""

        def script(delivery: Delivery, seen: int) -> Disposition:
            if seen == 0:
                return Disposition.wait(Reason.CASE_BLOCKED, case=CASE, after=60)
            return Disposition.ack()

        rig = make_rig(script)
        running = rig.handler.sequencer.enter(CASE, "p-running")
        assert isinstance(running, Admitted)
        message = rig.receive(Message("m-1"))
        [wake] = rig.handler.sequencer.leave(running, blocks=False)
        wake()
        wake()  # the timer's call, a moment later
        assert message.wait() == ["ack"]
        rig.drain()
        assert rig.handler.calls == {"m-1": 2} and message.settled == ["ack"]

    def test_when_the_hold_slots_are_full_a_waiting_plan_goes_back_to_pubsub(
        self, make_rig: Callable[..., Rig]
    ) -> None:
        rig = make_rig(
            always(Disposition.wait(Reason.CASE_BUSY, case=CASE)),
            flow_max_messages=3,
            concurrency=2,
        )
        assert rig.consumer.max_held == 1
        first = rig.receive(Message("m-1"))
        second = rig.receive(Message("m-2"))
        assert first.settled == [] and second.settled == ["nack"]
        assert rig.nacks(Reason.WAITED_TOO_LONG) == 1

    def test_a_plan_held_past_the_bound_goes_back_to_pubsub(
        self, make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(consumer_module, "MAX_HOLD_SECONDS", -1.0)
        rig = make_rig(always(Disposition.wait(Reason.CASE_BUSY, case=CASE)))
        message = rig.receive(Message("m-1"))
        assert message.settled == ["nack"] and rig.consumer.held == 0
        assert rig.nacks(Reason.WAITED_TOO_LONG) == 1


# --------------------------------------------------------------------------- wake-ups of our own

PLAN_KEY = b"plan-key-0123456789abcdef012345"


class Desk:
    """The approval desk as the consumer's sweep uses it: the plans decided before a moment."""

    def __init__(self, decided: list[tuple[str, str]] | Exception) -> None:
        self.decided = decided
        self.asked: list[float] = []

    def clock(self) -> float:
        return 1_700_000_000.0

    def decided_before(self, moment: float) -> list[tuple[str, str]]:
        self.asked.append(moment)
        if isinstance(self.decided, Exception):
            raise self.decided
        return self.decided


def handled(rig: Rig, count: int, seconds: float = 5.0) -> dict[str, int]:
    deadline = time.monotonic() + seconds
    while sum(rig.handler.calls.values()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # and no more
    return dict(rig.handler.calls)


def test_each_plan_decided_before_the_start_gets_one_signed_wake_up_retried_after_a_nack(
    make_rig: Callable[..., Rig],
) -> None:
    seen: list[Delivery] = []

    def script(delivery: Delivery, calls: int) -> Disposition:
        seen.append(delivery)
        if delivery.message_id == "sweep-p-1" and calls == 0:
            return Disposition.nack(Reason.TRANSIENT_FAULT)
        return Disposition.ack()

    rig = make_rig(script, signing_keys=(PLAN_KEY,))
    rig.handler.approvals = Desk([("p-1", CASE), ("p-2", CASE)])  # type: ignore[attr-defined]
    rig.consumer._wake_decided(1_700_000_000.0)
    assert handled(rig, 3) == {"sweep-p-1": 2, "sweep-p-2": 1}
    for delivery in seen:
        plan_id = delivery.message_id.removeprefix("sweep-")
        assert json.loads(delivery.data) == wakeup_document(plan_id, CASE, "fileops-daemon")
        assert delivery.attributes["plan_id"] == plan_id
        assert verify((PLAN_KEY,), delivery.data, delivery.attributes) == 2
        assert delivery.ordering_key == ""  # a busy case holds it rather than nacking it
    attempts = [d.delivery_attempt for d in seen if d.message_id == "sweep-p-1"]
    assert attempts == [1, 2]
    assert rig.nacks(Reason.TRANSIENT_FAULT) == 1


def test_a_wake_up_of_our_own_is_tried_as_often_as_pubsub_would_deliver_it(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(always(Disposition.nack(Reason.TRANSIENT_FAULT)), max_delivery_attempts=5)
    rig.handler.approvals = Desk([("p-1", CASE)])  # type: ignore[attr-defined]
    rig.consumer._wake_decided(1_700_000_000.0)
    assert handled(rig, 5) == {"sweep-p-1": 5}


def test_no_wake_up_of_our_own_while_stopping_or_when_the_ledger_fails(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(always(Disposition.ack()))
    rig.handler.approvals = Desk(ConnectionError("GCS is down"))  # type: ignore[attr-defined]
    rig.consumer._wake_decided(1_700_000_000.0)  # logged, not raised
    rig.handler.approvals = Desk([("p-1", CASE)])  # type: ignore[attr-defined]
    rig.consumer._stopping = True
    rig.consumer._wake_decided(1_700_000_000.0)
    assert handled(rig, 1, seconds=0.2) == {}
