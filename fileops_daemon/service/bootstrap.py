"""Create (idempotently) the topics, the plans subscription and the buckets."""

from __future__ import annotations

from typing import Any

import structlog
from google.api_core.exceptions import AlreadyExists, Conflict
from google.cloud import pubsub_v1
from google.protobuf import duration_pb2

from fileops_daemon.service.cloud import storage_client
from fileops_daemon.service.config import Config

__all__ = ["bootstrap"]

log = structlog.get_logger("fileops.bootstrap")


def bootstrap(config: Config) -> dict[str, Any]:
    """Make sure everything the daemon talks to exists; returns what was created. The log line
    also names what was already there (an empty ``created`` list is not "nothing made")."""
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    created: dict[str, Any] = {"topics": [], "subscriptions": [], "buckets": []}
    existing: dict[str, list[str]] = {"topics": [], "subscriptions": [], "buckets": []}
    try:
        for topic in (config.plans_topic, config.results_topic, config.dead_letter_topic):
            try:
                publisher.create_topic(name=config.topic_path(topic))
                created["topics"].append(topic)
            except AlreadyExists:
                existing["topics"].append(topic)
        subscriptions: list[dict[str, Any]] = [
            {
                "name": config.subscription_path(config.plans_subscription),
                "topic": config.topic_path(config.plans_topic),
                "enable_message_ordering": True,
                "ack_deadline_seconds": config.ack_deadline_seconds,
                "dead_letter_policy": {
                    "dead_letter_topic": config.topic_path(config.dead_letter_topic),
                    "max_delivery_attempts": config.max_delivery_attempts,
                },
                "retry_policy": {
                    "minimum_backoff": duration_pb2.Duration(seconds=10),
                    "maximum_backoff": duration_pb2.Duration(seconds=600),
                },
            },
            {  # keeps dead letters until an operator looks at them
                "name": config.subscription_path(f"{config.dead_letter_topic}-hold"),
                "topic": config.topic_path(config.dead_letter_topic),
                "ack_deadline_seconds": 60,
            },
        ]
        for request in subscriptions:
            name = str(request["name"]).rsplit("/", 1)[1]
            try:
                subscriber.create_subscription(request=request)
                created["subscriptions"].append(name)
            except AlreadyExists:
                existing["subscriptions"].append(name)
    finally:
        subscriber.close()
        publisher.stop()
    client = storage_client(config.project)
    for bucket in sorted({config.state_bucket, config.audit_bucket}):
        if client.lookup_bucket(bucket) is None:
            try:
                client.create_bucket(bucket)
                created["buckets"].append(bucket)
                continue
            except Conflict:
                pass
        existing["buckets"].append(bucket)
    log.info("bootstrap.done", created=created, already_there=existing)
    return created
