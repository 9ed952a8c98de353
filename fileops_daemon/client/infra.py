"""Infrastructure problems as values: what went wrong around a plan, not with it.

An agent tool answers these as data (status ``error`` with the message and the advice) and the
CLI as one line and an exit code, never as a traceback. ``classify`` recognises the problems a
person has to fix (a host that does not answer, no credentials, a missing topic, subscription
or bucket, a denied permission, missing configuration) and returns None for anything else, which
stays a bug to report.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from fileops_daemon.contract.envvars import ConfigError
from fileops_daemon.contract.errors import shorten
from fileops_daemon.contract.exitcodes import (
    EXIT_CONFIG,
    EXIT_NO_CREDENTIALS,
    EXIT_NOT_FOUND,
    EXIT_PERMISSION_DENIED,
    EXIT_UNREACHABLE,
)

__all__ = ["InfraProblem", "ProblemKind", "Service", "classify", "endpoint"]

ProblemKind = Literal["config", "unreachable", "no_credentials", "not_found", "permission_denied"]
Service = Literal["pubsub", "storage"]

_NAMES: dict[Service, str] = {"pubsub": "Pub/Sub", "storage": "GCS"}
_EMULATOR_VARIABLES: dict[Service, str] = {
    "pubsub": "PUBSUB_EMULATOR_HOST",
    "storage": "STORAGE_EMULATOR_HOST",
}
_DEFAULT_ENDPOINTS: dict[Service, str] = {
    "pubsub": "pubsub.googleapis.com:443",
    "storage": "storage.googleapis.com:443",
}
#: A message is one line; a gRPC error's text can run to kilobytes.
_MAX_DETAIL = 200


@dataclass(frozen=True)
class InfraProblem:
    """One problem around the plan: a one-line message, what to do, and the CLI's exit code."""

    kind: ProblemKind
    message: str
    advice: str
    exit_code: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def endpoint(service: Service, env: Mapping[str, str] | None = None) -> str:
    """The host a client of ``service`` talks to: the emulator's when set, else Google's."""
    env = os.environ if env is None else env
    return env.get(_EMULATOR_VARIABLES[service]) or _DEFAULT_ENDPOINTS[service]


def classify(
    exc: BaseException, service: Service | None = None, env: Mapping[str, str] | None = None
) -> InfraProblem | None:
    """The infrastructure problem ``exc`` stands for, or None if it is none of them.

    ``service`` names who raised it when the caller knows; otherwise it is told by the kind
    of error (HTTP errors come from GCS, gRPC ones from Pub/Sub).
    """
    if isinstance(exc, ConfigError):
        return InfraProblem(
            "config",
            f"configuration: {exc}",
            "Set the FILEOPS_* variables the fileops client needs (docs/agents.md).",
            EXIT_CONFIG,
        )
    cause = _unwrapped(exc)
    service = service or _service_of(cause)
    name = _NAMES[service]
    if isinstance(cause, auth_exc.DefaultCredentialsError):
        return InfraProblem(
            "no_credentials",
            f"no Google credentials found for {name}",
            "Run `gcloud auth application-default login`, set GOOGLE_APPLICATION_CREDENTIALS, "
            f"or point {_EMULATOR_VARIABLES[service]} at an emulator.",
            EXIT_NO_CREDENTIALS,
        )
    if isinstance(cause, gexc.Unauthenticated | auth_exc.RefreshError):
        return InfraProblem(
            "no_credentials",
            f"{name} refused the credentials: {_detail(cause)}",
            "Renew the credentials (`gcloud auth application-default login`) or fix "
            "GOOGLE_APPLICATION_CREDENTIALS.",
            EXIT_NO_CREDENTIALS,
        )
    if isinstance(cause, gexc.Forbidden):  # PermissionDenied is gRPC's 403
        return InfraProblem(
            "permission_denied",
            f"{name} denied permission: {_detail(cause)}",
            "Grant the account the role the operation needs (docs/deploy-gce.md, step 1).",
            EXIT_PERMISSION_DENIED,
        )
    if isinstance(cause, gexc.NotFound):
        return InfraProblem(
            "not_found",
            f"{name}: {_detail(cause)}",
            "Check FILEOPS_PROJECT and the topic, subscription and bucket names, or create "
            "them with `fileops bootstrap`.",
            EXIT_NOT_FOUND,
        )
    if _is_unreachable(exc) or _is_unreachable(cause):
        host = endpoint(service, env)
        return InfraProblem(
            "unreachable",
            f"cannot reach {name} at {host}: {_detail(cause)}",
            f"Check that {name} (or its emulator) runs at {host} and that the network "
            f"allows it; {_EMULATOR_VARIABLES[service]} selects an emulator.",
            EXIT_UNREACHABLE,
        )
    return None


def _unwrapped(exc: BaseException) -> BaseException:
    """The error under a retry that gave up (RetryError keeps the last one as its cause), or
    under the OSError a cloud error becomes for the core (``fileops_daemon.gcs.errors``)."""
    for _ in range(5):
        if isinstance(exc, gexc.RetryError):
            inner = exc.cause or exc.__cause__
        elif isinstance(exc, OSError):
            inner = exc.__cause__
        else:
            break
        if inner is None:
            break
        exc = inner
    return exc


def _service_of(exc: BaseException) -> Service:
    import requests

    if isinstance(exc, requests.RequestException | auth_exc.TransportError):
        return "storage"
    if isinstance(exc, gexc.GoogleAPICallError) and isinstance(exc.response, requests.Response):
        return "storage"  # an HTTP answer: only the storage client speaks HTTP here
    return "pubsub"


def _is_unreachable(exc: BaseException) -> bool:
    import requests

    return isinstance(
        exc,
        gexc.ServiceUnavailable
        | gexc.DeadlineExceeded
        | gexc.RetryError
        | requests.ConnectionError
        | requests.Timeout
        | auth_exc.TransportError
        | ConnectionError
        | TimeoutError,
    )


def _detail(exc: BaseException) -> str:
    """The error's own words on one line, short."""
    if isinstance(exc, gexc.GoogleAPICallError):
        text = exc.message or str(exc)
    else:
        text = str(exc) or type(exc).__name__
    return shorten(" ".join(text.split()), _MAX_DETAIL)
