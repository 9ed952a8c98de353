"""GCS client errors as the ``OSError``s the core understands.

The core retries an ``OSError`` whose errno is transient (``core.retry``) after re-checking the
tree, and turns ``FileExistsError``/``FileNotFoundError`` into step conflicts. So a passing
fault of the bucket becomes ``EIO``/``ECONNRESET``/``ETIMEDOUT``, a missing object ``ENOENT``,
a refusal of our credentials ``EACCES`` (not retried), anything else ``EREMOTEIO``.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

__all__ = ["as_os_errors"]

_TRANSIENT_HTTP = (
    gexc.TooManyRequests,
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.ServiceUnavailable,
    gexc.GatewayTimeout,
    gexc.RequestRangeNotSatisfiable,
)


@contextmanager
def as_os_errors(name: str) -> Iterator[None]:
    """Translate what a request about object ``name`` raised (``PreconditionFailed`` is left
    to the caller, which knows which precondition it set)."""
    try:
        yield
    except gexc.PreconditionFailed:
        raise
    except gexc.NotFound as exc:
        raise FileNotFoundError(errno.ENOENT, "no such object", name) from exc
    except _TRANSIENT_HTTP as exc:
        raise OSError(errno.EIO, _answer(exc), name) from exc
    except (gexc.Forbidden, gexc.Unauthorized) as exc:
        raise PermissionError(errno.EACCES, _answer(exc), name) from exc
    except gexc.GoogleAPICallError as exc:
        raise OSError(errno.EREMOTEIO, _answer(exc), name) from exc
    except requests.Timeout as exc:
        raise OSError(errno.ETIMEDOUT, "GCS did not answer in time", name) from exc
    except requests.ConnectionError as exc:
        raise OSError(
            errno.ECONNRESET, "GCS unreachable or the connection was reset", name
        ) from exc
    except requests.RequestException as exc:  # a cut-off answer (ChunkedEncodingError, ...)
        raise OSError(errno.EIO, f"GCS answer broken off ({type(exc).__name__})", name) from exc
    except auth_exc.TransportError as exc:
        raise OSError(errno.EIO, "GCS credentials unreachable", name) from exc


def _answer(exc: gexc.GoogleAPICallError) -> str:
    """One short line: the client's message carries the whole response body (HTML at times)."""
    return f"GCS answered {exc.code} {type(exc).__name__}"
