"""A plan's identity: what its plan_id promises to always mean, as a digest and as text.

Two plans under one plan_id are the same plan when they would change the tree the same way:
the same case, the same operations and, for an undo plan, the same undone plan. ``dry_run``
is left out (a dry run and its apply share an id), and so is the free text (``reason``,
``requested_by``): an agent retrying with a reworded reason sends the same plan again.

Records written before this rule carry the digest of the whole document without ``dry_run``
(``legacy_plan_digest``); a plan matches a recorded digest in either form, so a redelivery of
a plan applied by an earlier version is still recognised as that plan.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from fileops_daemon.contract.errors import shorten

__all__ = [
    "IDENTITY_FIELDS",
    "describe_difference",
    "legacy_plan_digest",
    "plan_digest",
    "plan_identity",
]

#: The top-level fields that make up a plan's identity (plan.schema.json allows no others
#: that change the tree).
IDENTITY_FIELDS = ("plan_id", "case_name", "undo_of", "operations")

#: Operation fields whose default value is the same as leaving them out.
_DEFAULTS: Mapping[str, object] = {"overwrite": False, "encoding": "text"}

#: How much of one path a conflict message quotes.
_PATH_CHARS = 120


def _operation_identity(operation: Any) -> Any:
    if not isinstance(operation, Mapping):
        return operation
    return {
        key: value
        for key, value in operation.items()
        if not (key in _DEFAULTS and value == _DEFAULTS[key])
    }


def plan_identity(document: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a plan document its digest covers, with defaults written out removed."""
    identity = {key: document[key] for key in IDENTITY_FIELDS if key in document}
    operations = identity.get("operations")
    if isinstance(operations, list):
        identity["operations"] = [_operation_identity(item) for item in operations]
    return identity


def _sha256_of(content: Mapping[str, Any]) -> str:
    # ensure_ascii: a canonical form for every JSON string, lone surrogates included.
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def plan_digest(document: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``plan_identity``: what the ledger and journal compare."""
    return _sha256_of(plan_identity(document))


def legacy_plan_digest(document: Mapping[str, Any]) -> str:
    """The digest earlier versions recorded: the whole document without ``dry_run``."""
    return _sha256_of({key: value for key, value in document.items() if key != "dry_run"})


# -- saying what differs --------------------------------------------------------------------


def _quote(path: object) -> str:
    return shorten(str(path), _PATH_CHARS)


def _describe_operation(operation: Mapping[str, Any]) -> str:
    kind = str(operation.get("type", "?"))
    if "from" in operation or "to" in operation:
        return f"{kind} {_quote(operation.get('from'))} -> {_quote(operation.get('to'))}"
    return f"{kind} {_quote(operation.get('path'))}"


def _recorded_operations(recorded: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """What a recorded result (or journal header) says of each operation: its type and,
    where a change shows them, its paths (``from``/``to`` of a move or copy, ``path``)."""
    found: dict[int, dict[str, Any]] = {}
    operations = recorded.get("operations")
    for item in operations if isinstance(operations, list) else []:
        if isinstance(item, Mapping) and isinstance(item.get("index"), int):
            found[item["index"]] = {"type": item.get("type")}
    changes = recorded.get("changes")
    for change in changes if isinstance(changes, list) else []:
        if not isinstance(change, Mapping) or not isinstance(change.get("operation"), int):
            continue
        seen = found.setdefault(change["operation"], {})
        action = change.get("action")
        if action in ("move", "copy"):
            seen.update({"from": change.get("from"), "to": change.get("to")})
        elif action == "write" or (action == "trash" and seen.get("type") == "delete"):
            seen.setdefault("path", change.get("path"))
    return found


def _operation_difference(
    index: int, before: Mapping[str, Any], after: Mapping[str, Any]
) -> str | None:
    if before.get("type") not in (None, after.get("type")):
        return f"operation {index} differs: {before.get('type')} vs {after.get('type')}"
    for key in ("from", "to", "path"):
        if key in before and before[key] != after.get(key):
            merged = {"type": after.get("type"), **before}
            return (
                f"operation {index} differs: {_describe_operation(merged)} "
                f"vs {_describe_operation(after)}"
            )
    return None


def describe_difference(new: Mapping[str, Any], recorded: object) -> str:
    """What sets plan document ``new`` apart from the plan recorded under its plan_id, as far
    as ``recorded`` (that plan's result or journal header) shows it; vague where it says
    nothing (a record still being applied, a result without changes)."""
    if isinstance(recorded, Mapping):
        recorded_case = recorded.get("case_name")
        if isinstance(recorded_case, str) and recorded_case != new.get("case_name"):
            return (
                f"case_name differs: {_quote(recorded_case)!r} vs {_quote(new.get('case_name'))!r}"
            )
        before = _recorded_operations(recorded)
        operations: Sequence[Any] = new.get("operations") or []
        count = recorded.get("operations")
        if isinstance(count, list) and count and len(count) != len(operations):
            return f"the recorded plan has {len(count)} operation(s), this one {len(operations)}"
        for index, item in enumerate(operations):
            if index in before and isinstance(item, Mapping):
                difference = _operation_difference(index, before[index], item)
                if difference is not None:
                    return difference
    return "the operations, case or undone plan differ (reason and requested_by do not count)"
