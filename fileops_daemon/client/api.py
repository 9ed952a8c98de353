"""The agent side: publish a plan, and wait for its result.

Waiting: a result names the Pub/Sub message id it answers (``in_reply_to``); Pub/Sub assigns
that id when the plan is published, so no other publisher can choose it. A client takes as its
answer only a result for a message id it published itself (and, for a plan, carrying the digest
of the plan it sent): whatever ``plan_id``, ``client_id`` or other attributes another sender
uses, it cannot make this client report anything but the true outcome of its own message.

Delivery: each client owns one results subscription that receives the results routed to its
``client_id`` (the daemon copies that attribute from an accepted plan message onto the result)
and the unrouted ones (refusals of messages the daemon could not accept: their attributes are
not trusted, yet their sender must hear them). Routing saves traffic; it proves nothing. The
subscription is created before the first publish (no result can be missed), deleted by
``close()``, and expires by itself after a day unused if a client dies without closing.

Failing fast: creating that subscription is the client's first call, and it is bounded by
``connect_timeout`` (a few seconds) instead of the library's 60 s of retries, so a host that
does not answer, a missing topic or missing rights surface at once (``infra.classify`` names
them). Publishing is bounded by ``publish_timeout``.

A client may be shared by threads (the async tools wait in short steps on worker threads).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from google.api_core.exceptions import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    GoogleAPIError,
    ServiceUnavailable,
)
from google.api_core.retry import Retry, if_exception_type
from google.cloud import pubsub_v1
from google.protobuf import duration_pb2

from fileops_daemon.contract import attributes as attr
from fileops_daemon.contract.envvars import project_from_env
from fileops_daemon.contract.identity import legacy_plan_digest, plan_digest
from fileops_daemon.contract.signing import SIGNATURE_ATTRIBUTE, load_key, sign_message

__all__ = [
    "ClientConfig",
    "FileopsClient",
    "close_default_client",
    "connect_retry",
    "default_client",
    "result_of",
    "results_filter",
    "self_expiring_subscription",
]

#: Shortest expiration Pub/Sub allows: a dead client's subscription goes away after this.
_EXPIRY_SECONDS = 24 * 3600
#: Shortest retention Pub/Sub allows.
_RETENTION_SECONDS = 600
#: Answers kept for ``answer()``: results can be large, and an agent may live for months.
_KEPT_ANSWERS = 256
#: Results held whose message id is not (yet) known as ours: one may answer a publish whose
#: id has not come back yet; the rest are other senders' refusals, dropped oldest first.
_KEPT_UNKNOWN = 256


@dataclass(frozen=True)
class ClientConfig:
    project: str
    plans_topic: str = "fileops-plans"
    results_topic: str = "fileops-results"
    signing_key: bytes | None = None
    #: Where the client's own results subscriptions live (default: ``project``). A project of
    #: their own lets agents manage subscriptions there without any right on the daemon's.
    subscription_project: str | None = None
    #: Seconds the first call (creating the results subscription) may take, retries included:
    #: an unreachable host, a missing topic or a refusal is known this quickly.
    connect_timeout: float = 5.0
    #: Seconds one publish may take, retries included.
    publish_timeout: float = 30.0
    #: This agent's fixed ``client_id`` (default: a new random one per client).
    client_id: str | None = None
    #: A results subscription made for this agent beforehand (its name, in the subscription
    #: project), which only this agent's identity may consume: the client neither creates
    #: nor deletes it. Default: a subscription of its own per client, made and deleted here.
    subscription: str | None = None

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
            client_id=env.get("FILEOPS_CLIENT_ID") or None,
            subscription=env.get("FILEOPS_CLIENT_SUBSCRIPTION") or None,
        )

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project}/topics/{topic}"

    def subscription_path(self, name: str) -> str:
        return f"projects/{self.subscription_project or self.project}/subscriptions/{name}"


class FileopsClient:
    """Publishes plans (signed when a key is configured) and waits for their results."""

    def __init__(self, config: ClientConfig, client_id: str | None = None) -> None:
        self.config = config
        self.client_id = client_id or config.client_id or f"c{uuid.uuid4().hex[:16]}"
        # A subscription made beforehand is the agent's own: used, never made or deleted here.
        self._owned = config.subscription is None
        self._publisher = pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        )
        self._subscriber: pubsub_v1.SubscriberClient | None = None
        self._subscription = config.subscription_path(
            config.subscription or f"fileops-results-{self.client_id}"
        )
        self._lock = threading.Lock()
        self._sent: set[str] = set()  # plan ids this client published
        self._latest: dict[str, Future[str]] = {}  # each plan id's latest publish
        #: Message ids this client published, each with the plan digests its answer may name
        #: (empty: any, as for an undo request, whose plan the daemon builds).
        self._mine: dict[str, frozenset[str]] = {}
        self._answers: OrderedDict[str, dict[str, Any]] = OrderedDict()  # by message id
        self._unknown: OrderedDict[str, dict[str, Any]] = OrderedDict()  # by in_reply_to
        self._closed = False

    def __enter__(self) -> FileopsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def subscription(self) -> str:
        """The path of this client's results subscription (it exists once a plan was sent)."""
        return self._subscription

    def close(self) -> None:
        """Delete the results subscription and stop publishing. Never raises, returns within
        about ``connect_timeout`` even when the host is gone (it runs at interpreter exit)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            if self._owned:
                # Gone, unreachable or forbidden: nothing more to do; it expires by itself.
                with contextlib.suppress(GoogleAPIError):
                    subscriber.delete_subscription(
                        subscription=self._subscription,
                        retry=self._short_retry(),
                        timeout=self.config.connect_timeout,
                    )
            subscriber.close()
        self._publisher.stop()

    def _short_retry(self) -> Retry:
        return connect_retry(self.config.connect_timeout)

    def _ensure_subscription(self) -> pubsub_v1.SubscriberClient:
        with self._lock:
            if self._closed:
                raise RuntimeError("this FileopsClient is closed")
            if self._subscriber is None:
                subscriber = pubsub_v1.SubscriberClient()
                try:
                    if not self._owned:  # made beforehand: that it exists is checked here
                        subscriber.get_subscription(
                            subscription=self._subscription,
                            retry=self._short_retry(),
                            timeout=self.config.connect_timeout,
                        )
                    else:
                        self._create_subscription(subscriber)
                except BaseException:
                    subscriber.close()
                    raise
                self._subscriber = subscriber
            return self._subscriber

    def _create_subscription(self, subscriber: pubsub_v1.SubscriberClient) -> None:
        with contextlib.suppress(AlreadyExists):
            subscriber.create_subscription(
                request={
                    "name": self._subscription,
                    "topic": self.config.topic_path(self.config.results_topic),
                    "filter": results_filter(self.client_id),
                    "ack_deadline_seconds": 10,
                    **self_expiring_subscription(),
                },
                retry=self._short_retry(),
                timeout=self.config.connect_timeout,
            )

    def start_publish(self, plan: Mapping[str, Any]) -> Future[str]:
        """Publish one plan without waiting: the future gives the Pub/Sub message id.

        Creates the results subscription first (bounded by ``connect_timeout``), so this may
        block that long; the publish itself runs in the library's threads.
        """
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
        plan_id, topic = attributes[attr.PLAN_ID], self.config.topic_path(self.config.plans_topic)
        digests = (
            frozenset({plan_digest(plan), legacy_plan_digest(plan)})
            if "operations" in plan
            else frozenset()
        )
        timeout = self.config.publish_timeout
        future: Future[str] = self._publisher.publish(
            topic,
            data,
            ordering_key=attributes[attr.CASE_NAME],
            retry=Retry(predicate=if_exception_type(ServiceUnavailable), timeout=timeout),
            timeout=timeout,
            **attributes,
        )

        self._sent.add(plan_id)
        self._latest[plan_id] = future  # an answer to an earlier send is not this one's

        def settled(done: Future[str]) -> None:
            if done.exception() is not None:
                # A failed publish pauses its ordering key; the next plan of the case may go.
                self._publisher.resume_publish(topic, attributes[attr.CASE_NAME])
                return
            self._own(done.result(), digests)

        future.add_done_callback(settled)
        return future

    def _own(self, message_id: str, digests: frozenset[str]) -> None:
        """``message_id`` is ours; its answer may have come already (before the id did)."""
        with self._lock:
            self._mine[message_id] = digests
            early = self._unknown.pop(message_id, None)
        if early is not None:
            self._take(early)

    def publish(self, plan: Mapping[str, Any]) -> str:
        """Publish one plan; returns the Pub/Sub message id."""
        future = self.start_publish(plan)
        return future.result(timeout=self.config.publish_timeout + 5)

    def wait(self, plan_id: str, timeout: float) -> dict[str, Any] | None:
        """The answer to this client's latest publish of ``plan_id``, or None if none arrived
        within ``timeout`` seconds (or this client never published it)."""
        deadline = time.monotonic() + timeout
        future = self._latest.get(plan_id)
        if future is None:
            return None
        try:
            message_id = future.result(timeout=max(0.0, timeout))
        except Exception:
            return None  # never published: no answer will come (publish() said why)
        return self.wait_message(message_id, deadline - time.monotonic())

    def wait_message(self, message_id: str, timeout: float) -> dict[str, Any] | None:
        """The result that answers the message ``message_id`` this client published, or None
        if none arrived within ``timeout`` seconds."""
        subscriber = self._ensure_subscription()
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                result = self._answers.get(message_id)
            if result is not None:
                return result
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
                if result is not None and isinstance(result.get("in_reply_to"), str):
                    self._take(result)

    def _take(self, result: dict[str, Any]) -> None:
        """Keep a received result: as an answer if it answers a message of ours (and names
        the plan we sent), else for a while in case the publish it answers is still settling."""
        message_id = result["in_reply_to"]
        with self._lock:
            digests = self._mine.get(message_id)
            if digests is None:
                self._unknown.pop(message_id, None)
                self._unknown[message_id] = result
                while len(self._unknown) > _KEPT_UNKNOWN:
                    self._unknown.popitem(last=False)
                return
            named = result.get("plan_digest")
            if digests and named is not None and named not in digests:
                return  # not an answer about the plan we sent: never ours
            self._answers.pop(message_id, None)
            self._answers[message_id] = result  # a later one (after an approval) replaces it
            while len(self._answers) > _KEPT_ANSWERS:
                self._answers.popitem(last=False)

    def sent(self, plan_id: str) -> bool:
        """Whether this client published ``plan_id``."""
        return plan_id in self._sent

    def answer(self, plan_id: str) -> dict[str, Any] | None:
        """The result that answered ``plan_id``'s latest publish, if one came (whoever waited)."""
        future = self._latest.get(plan_id)
        if future is None or not future.done() or future.exception() is not None:
            return None
        with self._lock:
            return self._answers.get(future.result())

    def submit(self, plan: Mapping[str, Any], timeout: float = 60.0) -> dict[str, Any] | None:
        """Publish and wait; None when the daemon did not answer in time."""
        self.publish(plan)
        return self.wait(str(plan.get("plan_id", "")), timeout)


_default: FileopsClient | None = None
_default_lock = threading.Lock()


def default_client() -> FileopsClient:
    """The client configured from FILEOPS_* variables that the tools share when given none.

    Made on first use (a failure is raised, and retried on the next call) and closed at
    interpreter exit, which deletes its results subscription.
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = FileopsClient(ClientConfig.from_env())
            atexit.unregister(close_default_client)  # once, however often it was remade
            atexit.register(close_default_client)
        return _default


def close_default_client() -> None:
    """Close the shared client (if one was made); the next ``default_client()`` makes a new one."""
    global _default
    with _default_lock:
        client, _default = _default, None
    if client is not None:
        client.close()


def connect_retry(timeout: float) -> Retry:
    """A first call's retry: a host that does not answer is an error within ``timeout``
    seconds, not after the library's 60 s of retries."""
    return Retry(
        predicate=if_exception_type(ServiceUnavailable),
        initial=0.2,
        maximum=1.0,
        multiplier=2.0,
        timeout=timeout,
    )


def results_filter(client_id: str) -> str:
    """A client's results subscription filter: the results routed to ``client_id`` and the
    unrouted ones (one may answer a message of ours the daemon refused before it knew whose it
    was). Routing only: the client keeps just the answers to its own message ids."""
    return f'attributes.{attr.CLIENT_ID} = "{client_id}" OR NOT attributes:{attr.CLIENT_ID}'


def self_expiring_subscription() -> dict[str, Any]:
    """Subscription settings under which a killed process's subscription goes away by itself
    (the shortest expiry and retention Pub/Sub allows)."""
    return {
        "expiration_policy": {"ttl": duration_pb2.Duration(seconds=_EXPIRY_SECONDS)},
        "message_retention_duration": duration_pb2.Duration(seconds=_RETENTION_SECONDS),
    }


def result_of(data: bytes) -> dict[str, Any] | None:
    """A result document, or None for anything that is not one."""
    try:
        result = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(result, dict) or not isinstance(result.get("plan_id"), str):
        return None
    return result
