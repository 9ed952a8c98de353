"""Cloud clients and the one retry policy for their transient faults.

Imported only by the daemon side: the core (plan, paths, simulate, execute) never loads a
cloud SDK, so a local ``fileops apply`` starts fast.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import TransportError
from google.cloud import storage
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from fileops_daemon.gcs.lean import lean_client

__all__ = ["CloudRetry", "is_transient", "storage_client"]

T = TypeVar("T")

_TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.GatewayTimeout,
    gexc.TooManyRequests,
    gexc.DeadlineExceeded,
    gexc.RetryError,
    requests.ConnectionError,
    requests.Timeout,
    TransportError,
    ConnectionError,
    TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """Faults worth another try: the service or the network, never our request."""
    return isinstance(exc, _TRANSIENT)


@dataclass(frozen=True)
class CloudRetry:
    """Exponential backoff for cloud calls; after the last attempt the error propagates."""

    attempts: int = 6
    initial_wait: float = 0.5
    max_wait: float = 10.0

    def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.initial_wait, max=self.max_wait),
            retry=retry_if_exception(is_transient),
            reraise=True,
        )
        return retrying(function, *args, **kwargs)


def storage_client(project: str) -> storage.Client:
    """A GCS client (``gcs/lean.py``: only the requests fileops makes); against
    ``STORAGE_EMULATOR_HOST`` when set (no credentials needed)."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return lean_client(storage.Client(project=project, credentials=AnonymousCredentials()))
    return lean_client(storage.Client(project=project))
