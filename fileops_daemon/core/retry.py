"""Passing filesystem faults (a network mount's EIO...) and how often a step is tried again."""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["TRANSIENT_ERRNOS", "RetryPolicy", "is_transient"]

#: Errors a network filesystem returns for passing faults: retried with backoff. gcsfuse
#: passes connection errors through (an unreachable bucket gives ECONNREFUSED, not EIO).
TRANSIENT_ERRNOS = frozenset(
    {
        errno.EIO,
        errno.ESTALE,
        errno.EAGAIN,
        errno.ETIMEDOUT,
        errno.EBUSY,
        errno.EINTR,
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.ENOTCONN,
    }
)

_T = TypeVar("_T")


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


@dataclass(frozen=True)
class RetryPolicy:
    """How often a step is tried again after a transient filesystem error."""

    attempts: int = 5
    initial_wait: float = 0.2
    max_wait: float = 5.0

    def run(self, first: Callable[[], _T], again: Callable[[], _T]) -> _T:
        """``first()``; after a transient filesystem error, ``again()`` with backoff until
        the attempts are spent. Backoff only once a first try failed: the common path builds
        no retry machinery, nor imports it."""
        try:
            return first()
        except OSError as exc:
            if not is_transient(exc) or self.attempts <= 1:
                raise
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts - 1),
            wait=wait_exponential(multiplier=self.initial_wait, max=self.max_wait),
            retry=retry_if_exception(is_transient),
            reraise=True,
        )
        return retrying(again)
