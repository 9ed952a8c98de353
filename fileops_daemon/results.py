"""Result documents (``schemas/result.schema.json``): what every plan gets back."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from fileops_daemon import __version__
from fileops_daemon.errors import PlanError, shorten

__all__ = ["SCHEMA_VERSION", "build_result", "now", "refusal_result", "worker_identity"]

SCHEMA_VERSION = "1"


def now() -> datetime:
    return datetime.now(UTC)


def _timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def worker_identity() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "version": __version__}


def build_result(
    *,
    plan_id: str,
    case_name: str,
    dry_run: bool,
    status: str,
    started: datetime,
    operations: list[dict[str, Any]] | None = None,
    changes: list[dict[str, Any]] | None = None,
    errors: Iterable[PlanError] = (),
    attempt: int = 1,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    finished = now()
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "plan_id": plan_id,
        "case_name": case_name,
        "dry_run": dry_run,
        "status": status,
        "operations": operations or [],
        "changes": changes or [],
        "errors": [error.to_dict() for error in errors],
        "attempt": attempt,
        "started_at": _timestamp(started),
        "finished_at": _timestamp(finished),
        "duration_ms": round((finished - started).total_seconds() * 1000, 3),
        "worker": worker_identity(),
    }
    if extra:
        result.update(extra)
    return result


def refusal_result(
    document: Any, error: PlanError, started: datetime, *, attempt: int = 1
) -> dict[str, Any]:
    """A ``rejected`` result for a plan that could not even be parsed."""
    fields = document if isinstance(document, Mapping) else {}
    plan_id = fields.get("plan_id")
    case_name = fields.get("case_name")
    dry_run = fields.get("dry_run", True)
    return build_result(
        plan_id=_text(plan_id),
        case_name=_text(case_name),
        dry_run=dry_run if isinstance(dry_run, bool) else True,
        status="rejected",
        started=started,
        errors=[error],
        attempt=attempt,
    )


def _text(value: object) -> str:
    """A field of an unchecked document, fit to print and encode (bounded, valid UTF-8)."""
    if not isinstance(value, str):
        return ""
    return shorten(value.encode("utf-8", "surrogatepass").decode("utf-8", "replace"), 255)
