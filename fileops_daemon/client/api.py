"""The agent side: publish a plan, and wait for its result.

Waiting: each client owns one results subscription filtered on its own ``client_id``
attribute (the daemon copies that attribute from the plan message onto the result). So a
client receives only its own results, however many agents share the topic. The subscription
is created before the first publish (no result can be missed), deleted by ``close()``, and
expires by itself after a day unused if a client dies without closing.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.api_core.exceptions import AlreadyExists, Cancelled, DeadlineExceeded, NotFound
from google.cloud import pubsub_v1
from google.protobuf import duration_pb2

from fileops_daemon.contract import attributes as attr
from fileops_daemon.contract.envvars import project_from_env
from fileops_daemon.contract.signing import SIGNATURE_ATTRIBUTE, load_key, sign_message

__all__ = ["ClientConfig", "FileopsClient", "result_of"]

#: Shortest expiration Pub/Sub allows: a dead client's subscription goes away after this.
_EXPIRY_SECONDS = 24 * 3600
#: Shortest retention Pub/Sub allows.
_RETENTION_SECONDS = 600


@dataclass(frozen=True)
class ClientConfig:
    project: str
    plans_topic: str = "fileops-plans"
    results_topic: str = "fileops-results"
    signing_key: bytes | None = None
    #: Where the client's own results subscriptions live (default: ``project``). A project of
    #: their own lets agents manage subscriptions there without any right on the daemon's.
    subscription_project: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientConfig:
        env = os.environ if env is None else env
        project = project_from_env(env)
        key_file = env.get("FILEOPS_SIGNING_KEY_FILE")
        return cls(
            project=project,
            plans_topic=env.get("FILEOPS_PLANS_TOPIC") or cls.plans_topic,
            results_topic=env.get("FILEOPS_RESULTS_TOPIC") or cls.results_topic,
            signing_key=load_key(key_file) if key_file else None,
            subscription_project=env.get("FILEOPS_CLIENT_SUBSCRIPTION_PROJECT") or None,
        )

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project}/topics/{topic}"

    def subscription_path(self, name: str) -> str:
        return f"projects/{self.subscription_project or self.project}/subscriptions/{name}"


class FileopsClient:
    """Publishes plans (signed when a key is configured) and waits for their results."""

    def __init__(self, config: ClientConfig, client_id: str | None = None) -> None:
        self.config = config
        self.client_id = client_id or f"c{uuid.uuid4().hex[:16]}"
        self._publisher = pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        )
        self._subscriber: pubsub_v1.SubscriberClient | None = None
        self._subscription = config.subscription_path(f"fileops-results-{self.client_id}")
        self._waiting: dict[str, dict[str, Any]] = {}  # results that arrived for other plans
        self._sent: set[str] = set()  # plan ids this client published: the only answers taken

    def __enter__(self) -> FileopsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._subscriber is not None:
            with contextlib.suppress(NotFound):
                self._subscriber.delete_subscription(subscription=self._subscription)
            self._subscriber.close()
            self._subscriber = None
        self._publisher.stop()

    def _ensure_subscription(self) -> pubsub_v1.SubscriberClient:
        if self._subscriber is None:
            subscriber = pubsub_v1.SubscriberClient()
            with contextlib.suppress(AlreadyExists):
                subscriber.create_subscription(
                    request={
                        "name": self._subscription,
                        "topic": self.config.topic_path(self.config.results_topic),
                        "filter": f'attributes.{attr.CLIENT_ID} = "{self.client_id}"',
                        "ack_deadline_seconds": 10,
                        "expiration_policy": {
                            "ttl": duration_pb2.Duration(seconds=_EXPIRY_SECONDS)
                        },
                        "message_retention_duration": duration_pb2.Duration(
                            seconds=_RETENTION_SECONDS
                        ),
                    }
                )
            self._subscriber = subscriber
        return self._subscriber

    def publish(self, plan: Mapping[str, Any]) -> str:
        """Publish one plan; returns the Pub/Sub message id."""
        self._ensure_subscription()
        data = json.dumps(plan, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        attributes = {
            attr.PLAN_ID: str(plan.get("plan_id", "")),
            attr.CASE_NAME: str(plan.get("case_name", "")),
            attr.DRY_RUN: "false" if plan.get("dry_run") is False else "true",
            attr.CLIENT_ID: self.client_id,
        }
        if self.config.signing_key is not None:  # v2: the data and these attributes
            attributes[SIGNATURE_ATTRIBUTE] = sign_message(
                self.config.signing_key, data, attributes
            )
        future = self._publisher.publish(
            self.config.topic_path(self.config.plans_topic),
            data,
            ordering_key=attributes[attr.CASE_NAME],
            **attributes,
        )
        message_id: str = future.result(timeout=60)
        self._sent.add(attributes[attr.PLAN_ID])
        return message_id

    def wait(self, plan_id: str, timeout: float) -> dict[str, Any] | None:
        """The result for ``plan_id``, or None if none arrived within ``timeout`` seconds."""
        subscriber = self._ensure_subscription()
        deadline = time.monotonic() + timeout
        while True:
            if plan_id in self._waiting:
                return self._waiting.pop(plan_id)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                response = subscriber.pull(
                    request={"subscription": self._subscription, "max_messages": 50},
                    timeout=max(0.1, min(remaining, 10.0)),
                )
            except (DeadlineExceeded, Cancelled):
                # Pub/Sub may hold a pull open until a message comes: time up means none yet
                # (a deadline this short can also end the call as a cancelled stream).
                continue
            if not response.received_messages:
                time.sleep(min(0.2, max(remaining, 0)))
                continue
            subscriber.acknowledge(
                request={
                    "subscription": self._subscription,
                    "ack_ids": [m.ack_id for m in response.received_messages],
                }
            )
            for received in response.received_messages:
                result = result_of(received.message.data)
                # Only an answer to a plan we sent counts; anything else is dropped.
                if result is not None and result["plan_id"] in self._sent:
                    self._waiting[result["plan_id"]] = result

    def submit(self, plan: Mapping[str, Any], timeout: float = 60.0) -> dict[str, Any] | None:
        """Publish and wait; None when the daemon did not answer in time."""
        self.publish(plan)
        return self.wait(str(plan.get("plan_id", "")), timeout)


def result_of(data: bytes) -> dict[str, Any] | None:
    """A result document, or None for anything that is not one."""
    try:
        result = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(result, dict) or not isinstance(result.get("plan_id"), str):
        return None
    return result
