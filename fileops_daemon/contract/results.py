"""Result documents (``schemas/result.schema.json``): what every plan gets back."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from fileops_daemon import __version__
from fileops_daemon.contract.errors import PlanError, shorten, valid_utf8

__all__ = [
    "MAX_RESULT_BYTES",
    "SCHEMA_VERSION",
    "OperationOutcome",
    "ResultStatus",
    "answering",
    "bounded",
    "build_result",
    "encode_result",
    "now",
    "refusal_result",
    "replayed",
    "worker_identity",
]

SCHEMA_VERSION = "1"
#: Largest result published (serialized): Pub/Sub refuses over 10 MB, and no reader wants more.
MAX_RESULT_BYTES = 1 << 20
#: The lists a result may cut, in the order they get their share of the room.
_LISTS = ("errors", "remaining", "operations", "changes")


class ResultStatus(StrEnum):
    """A result's ``status``: how the plan ended, as its sender reads it."""

    PLANNED = "planned"  # a dry run: nothing changed; ``changes`` says what would
    APPLIED = "applied"  # every operation ran
    REJECTED = "rejected"  # refused as a whole; nothing was touched
    FAILED = "failed"  # a step failed and was rolled back (``remaining``: what could not be)
    AWAITING_APPROVAL = "awaiting_approval"  # held until an operator approves it


class OperationOutcome(StrEnum):
    """One operation's ``outcome`` in a result."""

    OK = "ok"  # would run (dry run), or was about to
    NOOP = "noop"  # nothing to do: already as asked
    REFUSED = "refused"  # a conflict; ``code`` says which
    NOT_CHECKED = "not_checked"  # an earlier refusal stopped the checks
    APPLIED = "applied"
    ROLLED_BACK = "rolled_back"  # ran, then was undone when a later step failed
    NOT_APPLIED = "not_applied"  # never ran (or its undo did not finish)


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
    status: ResultStatus,
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
        "status": str(status),  # a plain string in the document
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


def answering(result: dict[str, Any], message_id: str) -> dict[str, Any]:
    """``result`` as the answer to the plan message ``message_id`` (``in_reply_to``): Pub/Sub
    assigned that id, so no other publisher can make a client take this answer as its own.
    A copy when the field must change; the caller's dict (a ledger's copy) is never touched."""
    if result.get("in_reply_to") == message_id:
        return result
    return {**result, "in_reply_to": message_id}


def replayed(stored: dict[str, Any], message_id: str) -> dict[str, Any]:
    """A stored result given to message ``message_id`` that asked again for a finished plan:
    a copy marked ``replay`` (this request changed nothing; ``replay_of`` names the message
    it first answered). The redelivery of the message it answered gets it unmarked."""
    if stored.get("in_reply_to") == message_id:
        return stored
    copy = {key: value for key, value in stored.items() if key not in ("replay", "replay_of")}
    copy.update(in_reply_to=message_id, replay=True)
    first = stored.get("replay_of", stored.get("in_reply_to"))
    if isinstance(first, str):
        copy["replay_of"] = first
    return copy


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
        status=ResultStatus.REJECTED,
        started=started,
        errors=[error],
        attempt=attempt,
    )


def _text(value: object) -> str:
    """A field of an unchecked document, fit to print and encode (bounded, valid UTF-8)."""
    if not isinstance(value, str):
        return ""
    return shorten(valid_utf8(value), 255)


def encode_result(value: object) -> bytes:
    """The wire form of a result (compact UTF-8 JSON), as published."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _size(value: object) -> int:
    return len(encode_result(value))


def bounded(
    result: dict[str, Any],
    *,
    full_result: str,
    limit: int = MAX_RESULT_BYTES,
    size: int | None = None,
) -> dict[str, Any]:
    """``result`` itself when its JSON fits in ``limit`` bytes; else a copy whose lists keep
    their first entries that fit, with ``truncated`` giving each list's full length and
    ``full_result``: where the whole result is kept. ``size``: its encoded length, if known."""
    if (_size(result) if size is None else size) <= limit:
        return result
    present = [name for name in _LISTS if name in result]
    shown = {key: value for key, value in result.items() if key not in _LISTS}
    shown["truncated"] = {name: len(result[name]) for name in present}
    shown["truncated"]["full_result"] = full_result
    room = limit - _size(shown) - 64 * len(present)  # each list's key, brackets, commas
    for position, name in enumerate(present):
        share = max(0, room) // (len(present) - position)  # what one list leaves, the next gets
        kept: list[Any] = []
        used = 0
        for entry in result[name]:
            cost = _size(entry) + 1
            if used + cost > share:
                break
            kept.append(entry)
            used += cost
        shown[name] = kept
        room -= used
    return shown
