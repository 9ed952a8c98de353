"""Probe what a Pub/Sub emulator does like the real service, so tests can ask instead of assume.

Each probe makes its own topic and subscription in a throwaway project on the emulator and
answers one question in a second or two. The results decide which tests run on which
emulator (``@pytest.mark.needs_pubsub("dead_letter")``), and the table in README.md here is
written from them (``python -m tests.emulators.capabilities HOST:PORT`` prints it).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc
from google.protobuf import duration_pb2

__all__ = ["CAPABILITIES", "probe_all"]

#: name -> what it means when an emulator has it.
CAPABILITIES: dict[str, str] = {
    "dead_letter": "honours a dead-letter policy: a message nacked max_delivery_attempts times "
    "moves to the dead-letter topic",
    "delivery_attempt": "sets delivery_attempt on messages of a subscription with a dead-letter "
    "policy",
    "retry_backoff": "honours a retry policy: a nacked message comes back after minimum_backoff, "
    "not at once",
    "ordered_redelivery": "redelivers a nacked message of an ordering key before the key's next "
    "message",
    "filter": "applies a subscription's attribute filter",
    "exactly_once": "accepts a subscription with exactly-once delivery enabled",
    "nack_after_stream_close": "redelivers at once a message nacked after its streaming pull "
    "closed (a daemon's hand-over on shutdown); without it the message waits out its ack "
    "deadline",
}


class _Probe:
    def __init__(self, host: str) -> None:
        from google.cloud import pubsub_v1

        os.environ["PUBSUB_EMULATOR_HOST"] = host
        self.project = f"probe-{uuid.uuid4().hex[:8]}"
        self.publisher = pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        )
        self.subscriber = pubsub_v1.SubscriberClient()

    def close(self) -> None:
        self.publisher.stop()
        self.subscriber.close()

    def topic(self) -> str:
        name = f"projects/{self.project}/topics/t-{uuid.uuid4().hex[:8]}"
        self.publisher.create_topic(name=name)
        return name

    def subscription(self, topic: str, **fields: Any) -> str:
        name = f"projects/{self.project}/subscriptions/s-{uuid.uuid4().hex[:8]}"
        self.subscriber.create_subscription(
            request={"name": name, "topic": topic, "ack_deadline_seconds": 10, **fields}
        )
        return name

    def publish(self, topic: str, data: bytes, key: str = "", **attrs: str) -> None:
        self.publisher.publish(topic, data, ordering_key=key, **attrs).result(timeout=10)

    def pull(self, subscription: str, wait: float = 2.0) -> list[Any]:
        deadline = time.monotonic() + wait
        while True:
            try:
                response = self.subscriber.pull(
                    request={"subscription": subscription, "max_messages": 10}, timeout=1.0
                )
                if response.received_messages:
                    return list(response.received_messages)
            except (gexc.DeadlineExceeded, gexc.RetryError):
                pass
            if time.monotonic() > deadline:
                return []
            time.sleep(0.05)

    def nack(self, subscription: str, ack_id: str) -> None:
        self.subscriber.modify_ack_deadline(
            request={"subscription": subscription, "ack_ids": [ack_id], "ack_deadline_seconds": 0}
        )

    def ack(self, subscription: str, ack_id: str) -> None:
        self.subscriber.acknowledge(request={"subscription": subscription, "ack_ids": [ack_id]})

    # -- the probes -----------------------------------------------------------------------------

    def dead_letter(self) -> dict[str, bool]:
        topic, dead = self.topic(), self.topic()
        hold = self.subscription(dead)
        sub = self.subscription(
            topic,
            dead_letter_policy={"dead_letter_topic": dead, "max_delivery_attempts": 5},
            retry_policy={"minimum_backoff": duration_pb2.Duration(seconds=0)},
        )
        self.publish(topic, b"poison")
        attempts: list[int] = []
        for _ in range(7):
            got = self.pull(sub, wait=1.5)
            if not got:
                break
            attempts.append(got[0].delivery_attempt)
            self.nack(sub, got[0].ack_id)
        return {
            "dead_letter": bool(self.pull(hold, wait=2.0)),
            "delivery_attempt": any(a > 0 for a in attempts),
        }

    def retry_backoff(self) -> bool:
        topic = self.topic()
        sub = self.subscription(
            topic, retry_policy={"minimum_backoff": duration_pb2.Duration(seconds=3)}
        )
        self.publish(topic, b"x")
        first = self.pull(sub)
        if not first:
            return False
        self.nack(sub, first[0].ack_id)
        nacked = time.monotonic()
        again = self.pull(sub, wait=6.0)
        return bool(again) and time.monotonic() - nacked >= 2.0

    def ordered_redelivery(self) -> bool:
        topic = self.topic()
        sub = self.subscription(topic, enable_message_ordering=True)
        for data in (b"k1", b"k2"):
            self.publish(topic, data, key="case")
        first = self.pull(sub)
        if not first:
            return False
        for item in first:
            self.nack(sub, item.ack_id)
        again = self.pull(sub, wait=15.0)
        return bool(again) and again[0].message.data == b"k1"

    def filter(self) -> bool:
        topic = self.topic()
        sub = self.subscription(topic, filter='attributes.kind = "keep"')
        self.publish(topic, b"dropped", kind="drop")
        self.publish(topic, b"kept", kind="keep")
        got = self.pull(sub)
        return [item.message.data for item in got] == [b"kept"]

    def nack_after_stream_close(self) -> bool:
        """A streaming subscriber holds a message, its stream closes, then it nacks."""
        import threading

        from google.cloud import pubsub_v1

        topic = self.topic()
        sub = self.subscription(topic, enable_message_ordering=True, ack_deadline_seconds=60)
        self.publish(topic, b"held", key="case")
        got, release = threading.Event(), threading.Event()

        def hold_then_nack(message: Any) -> None:
            got.set()
            release.wait(10)
            message.nack()

        client = pubsub_v1.SubscriberClient()
        try:
            future = client.subscribe(sub, hold_then_nack, await_callbacks_on_shutdown=True)
            if not got.wait(10):
                return False
            threading.Thread(target=future.cancel, daemon=True).start()
            time.sleep(0.5)
            release.set()
            with contextlib.suppress(Exception):
                future.result(timeout=10)
        finally:
            client.close()
        return bool(self.pull(sub, wait=3.0))

    def exactly_once(self) -> bool:
        topic = self.topic()
        try:
            sub = self.subscription(topic, enable_exactly_once_delivery=True)
        except gexc.GoogleAPICallError:
            return False
        made = self.subscriber.get_subscription(request={"subscription": sub})
        return bool(made.enable_exactly_once_delivery)


def probe_all(host: str) -> dict[str, bool]:
    """Every capability of the Pub/Sub emulator at ``host`` (``HOST:PORT``)."""
    saved = os.environ.get("PUBSUB_EMULATOR_HOST")
    probe = _Probe(host)
    found: dict[str, bool] = {}
    try:
        found.update(probe.dead_letter())
        checks: dict[str, Callable[[], bool]] = {
            "retry_backoff": probe.retry_backoff,
            "ordered_redelivery": probe.ordered_redelivery,
            "filter": probe.filter,
            "exactly_once": probe.exactly_once,
            "nack_after_stream_close": probe.nack_after_stream_close,
        }
        for name, check in checks.items():
            try:
                found[name] = check()
            except gexc.GoogleAPICallError:
                found[name] = False
    finally:
        probe.close()
        if saved is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = saved
    return found


if __name__ == "__main__":  # python -m tests.emulators.capabilities HOST:PORT
    for capability, present in probe_all(sys.argv[1]).items():
        print(f"{capability:20} {'yes' if present else 'no':4} {CAPABILITIES[capability]}")
