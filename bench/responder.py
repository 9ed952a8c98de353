"""The bare Pub/Sub round trip's far end: a subscriber whose callback publishes a reply at once.

Built like the daemon's consumer (streaming pull, 4 worker threads, flow control of 8
messages, the reply published and awaited before the ack), minus everything fileops does.

    python -m bench.responder PROJECT SUBSCRIPTION REPLY_TOPIC    (PUBSUB_EMULATOR_HOST set)
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any

from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.subscriber.scheduler import ThreadScheduler


def main(argv: list[str]) -> int:
    project, subscription, reply_topic = argv
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic_path = f"projects/{project}/topics/{reply_topic}"

    def on_message(message: Any) -> None:
        attributes = dict(message.attributes)
        attributes["status"] = "echo"
        publisher.publish(topic_path, message.data, **attributes).result(timeout=60)
        message.ack()

    future = subscriber.subscribe(
        f"projects/{project}/subscriptions/{subscription}",
        callback=on_message,
        flow_control=pubsub_v1.types.FlowControl(max_messages=8),
        scheduler=ThreadScheduler(ThreadPoolExecutor(4, thread_name_prefix="responder")),
    )
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print("ready", flush=True)
    while not stop.wait(0.5):
        if future.done():
            return 1
    future.cancel()
    subscriber.close()
    publisher.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
