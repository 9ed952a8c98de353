"""The finding of the approval restart test, reduced to the bare Pub/Sub client.

Subscriber A receives message 1 of ordering key K and acks it, then stops as the daemon stops
(the streaming pull's future cancelled, its result awaited); message 2 of K is published
while nobody listens; subscriber B starts. On pstest (and Pub/Sub) B receives message 2 at
once. On Google's emulator B receives nothing at all: the cancelled stream broke streaming
delivery on the subscription, with ordering or without, exactly-once or not, acked with or
without a response, paused before the stop or not, stopped by ``cancel()`` or ``close()``
(tests/emulators/README.md). The emulator never learns that a client cancelled a stream: its
gRPC throws ``NoSuchMethodError ... InternalStatus.asRuntimeException`` in
``onRstStreamRead``, before the close reaches the emulator. A stream the client half-closes
(the server then ends it) leaves the subscription working: the cancel is the trigger.

The gcloud half pins the defect: it fails once the emulator delivers to B; then the finding
in tests/emulators/README.md and fileops_daemon/service/approval_sweep.py can say so.
"""

from __future__ import annotations

import contextlib
import os
import queue
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import pubsub_v1
from google.protobuf import duration_pb2
from google.pubsub_v1 import types

from tests.daemon_support import Emulators

pytest_plugins = ["tests.conftest_daemon"]

KEY = "Smith-v-Jones"
#: How long B listens. On Google's emulator nothing came in 90 s either (well past the 60 s
#: ack deadline), and nothing came to the daemon in 150 s.
LISTEN_SECONDS = 10.0


class Topic:
    """A plans topic and subscription in a fresh project, created as ``fileops bootstrap``
    creates them (service/bootstrap.py)."""

    def __init__(self, host: str) -> None:
        os.environ["PUBSUB_EMULATOR_HOST"] = host
        project = f"cancel-{uuid.uuid4().hex[:8]}"
        self.topic = f"projects/{project}/topics/plans"
        self.subscription = f"projects/{project}/subscriptions/plans-sub"
        self.publisher = pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        )
        self.admin = pubsub_v1.SubscriberClient()
        dead_letters = f"projects/{project}/topics/plans-dead"
        for topic in (self.topic, dead_letters):
            self.publisher.create_topic(name=topic)
        self.admin.create_subscription(
            request={
                "name": self.subscription,
                "topic": self.topic,
                "enable_message_ordering": True,
                "ack_deadline_seconds": 60,
                "dead_letter_policy": {
                    "dead_letter_topic": dead_letters,
                    "max_delivery_attempts": 5,
                },
                "retry_policy": {
                    "minimum_backoff": duration_pb2.Duration(seconds=10),
                    "maximum_backoff": duration_pb2.Duration(seconds=600),
                },
            }
        )

    def publish(self, data: bytes) -> None:
        self.publisher.publish(self.topic, data, ordering_key=KEY).result(timeout=30)

    def close(self) -> None:
        self.publisher.stop()
        self.admin.close()


class Subscriber:
    """A streaming pull started and stopped as the daemon's consumer does (service/consumer.py):
    its flow control, acks from the callback, stopped by cancelling the future and awaiting
    its result."""

    def __init__(self, topic: Topic) -> None:
        self.client = pubsub_v1.SubscriberClient()
        self.received: list[bytes] = []
        flow = pubsub_v1.types.FlowControl(
            max_messages=8,
            max_bytes=64 << 20,
            min_duration_per_lease_extension=60,
            max_duration_per_lease_extension=60,
            max_lease_duration=24 * 3600,
        )
        self.future = self.client.subscribe(
            topic.subscription,
            callback=self._on_message,
            flow_control=flow,
            await_callbacks_on_shutdown=True,
        )

    def _on_message(self, message: Any) -> None:
        self.received.append(message.data)
        message.ack()

    def wait(self, count: int, timeout: float) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.received)

    def stop(self) -> None:
        self.future.cancel()
        with contextlib.suppress(Exception):  # a cancelled stream ends with an error
            self.future.result(timeout=30)
        self.client.close()


@pytest.fixture
def topic(emulators: Emulators, monkeypatch: pytest.MonkeyPatch) -> Iterator[Topic]:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulators.pubsub_host)
    made = Topic(emulators.pubsub_host)
    yield made
    made.close()


def test_a_subscriber_started_after_one_that_cancelled_its_stream_receives(
    emulators: Emulators, topic: Topic
) -> None:
    a = Subscriber(topic)
    topic.publish(b"message 1")
    assert a.wait(1, 30) == [b"message 1"]
    a.stop()
    topic.publish(b"message 2")  # nobody listens
    b = Subscriber(topic)
    try:
        received = b.wait(1, LISTEN_SECONDS)
    finally:
        b.stop()
    if emulators.pubsub_kind != "gcloud":
        assert received == [b"message 2"]
        return
    assert received == [], (
        "Google's emulator now delivers to a streaming pull started after a cancelled one: "
        "update the finding in tests/emulators/README.md"
    )


def test_a_subscriber_started_after_one_that_half_closed_its_stream_receives(
    topic: Topic,
) -> None:
    """The control: the same, but A ends its stream the polite way (no more requests; the
    server ends the call), which the Python client never does. Both emulators deliver."""
    requests: queue.Queue[types.StreamingPullRequest | None] = queue.Queue()
    requests.put(
        types.StreamingPullRequest(subscription=topic.subscription, stream_ack_deadline_seconds=60)
    )

    def outgoing() -> Iterator[types.StreamingPullRequest]:
        while (request := requests.get()) is not None:
            yield request

    call = topic.admin._transport.streaming_pull(outgoing())
    topic.publish(b"message 1")
    response = next(call)
    assert [m.message.data for m in response.received_messages] == [b"message 1"]
    requests.put(types.StreamingPullRequest(ack_ids=[response.received_messages[0].ack_id]))
    requests.put(None)  # half-close: the server ends the stream
    assert list(call) == []
    topic.publish(b"message 2")
    b = Subscriber(topic)
    try:
        assert b.wait(1, LISTEN_SECONDS) == [b"message 2"]
    finally:
        b.stop()
