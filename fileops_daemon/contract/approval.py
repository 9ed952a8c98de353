"""Approvals: the operator's signed decision on a waiting plan, and the wake-up message.

A plan that needs approval is simulated and waits in the ledger. An operator decides with
``fileops approve``/``fileops reject``: that writes a *decision* (this module's document,
HMAC-signed with the approval key, which agents do not hold) and then publishes a small
*wake-up* on the plans topic. The wake-up carries no authority: anyone who may publish plans
can send one, and the daemon only looks up the signed decision it names.

The decision's signature uses its own domain tag, so no plan signature (``fileops-plan-v2``)
can ever pass as a decision's, even under the same key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from fileops_daemon.contract.errors import ErrorCode, PlanError, shorten

__all__ = [
    "APPROVE",
    "REJECT",
    "Decision",
    "WakeUp",
    "changes_digest",
    "is_wakeup",
    "key_id",
    "sign_decision",
    "verify_decision",
    "wakeup_document",
]

APPROVE, REJECT = "approve", "reject"
_DOMAIN = b"fileops-approval-v1\n"
_PREFIX = "a1="
_MAX_TEXT = 1000
_WAKEUP_FIELDS = frozenset({"approval_of", "plan_id", "case_name", "dry_run", "requested_by"})


@dataclass(frozen=True)
class Decision:
    """What one operator decided about one plan, as shown to them (its two digests)."""

    plan_id: str
    decision: str  # approve | reject
    plan_digest: str  # the plan document's digest (Plan.digest)
    changes_digest: str  # of the simulated changes the operator saw
    by: str  # who decided (the operator's name, as their machine knows it)
    at: float  # when (seconds since the epoch)
    reason: str = ""

    def payload(self) -> bytes:
        """The bytes the signature covers: the domain tag, then canonical JSON."""
        body = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return _DOMAIN + body.encode("ascii")

    def signed(self, key: bytes) -> dict[str, Any]:
        """The decision document as stored: its fields and the signature."""
        return {**asdict(self), "signature": sign_decision(key, self)}

    @classmethod
    def from_document(cls, document: Any) -> Decision:
        """Read a stored decision (unverified); PlanError(approval_forged) if malformed."""
        if not isinstance(document, Mapping):
            raise PlanError(ErrorCode.APPROVAL_FORGED, "the approval decision is not an object")
        texts = ("plan_id", "decision", "plan_digest", "changes_digest", "by", "reason")
        fields: dict[str, Any] = {}
        for name in texts:
            value = document.get(name, "" if name == "reason" else None)
            if not isinstance(value, str) or len(value) > _MAX_TEXT:
                raise PlanError(ErrorCode.APPROVAL_FORGED, f"the decision's {name} is not valid")
            fields[name] = value
        at = document.get("at")
        if not isinstance(at, int | float) or isinstance(at, bool):
            raise PlanError(ErrorCode.APPROVAL_FORGED, "the decision's time is not valid")
        if fields["decision"] not in (APPROVE, REJECT):
            raise PlanError(ErrorCode.APPROVAL_FORGED, "the decision is neither approve nor reject")
        return cls(**fields, at=float(at))


def sign_decision(key: bytes, decision: Decision) -> str:
    return _PREFIX + hmac.new(key, decision.payload(), hashlib.sha256).hexdigest()


def verify_decision(keys: Sequence[bytes], document: Any) -> Decision:
    """The decision in ``document`` if one of ``keys`` signed it; else PlanError
    (approval_forged). Every key is tried, so the time does not say which matched."""
    decision = Decision.from_document(document)
    given = document.get("signature") if isinstance(document, Mapping) else None
    presented = given.encode("ascii", "replace") if isinstance(given, str) else b""
    matched = False
    for key in keys:
        expected = sign_decision(key, decision).encode("ascii")
        matched |= hmac.compare_digest(expected, presented)
    if not matched:
        raise PlanError(
            ErrorCode.APPROVAL_FORGED,
            f"the decision on {shorten(decision.plan_id, 200)!r} is not signed with the "
            "approval key; nothing was changed",
        )
    return decision


def key_id(key: bytes) -> str:
    """A short public name of an approval key: which key a daemon holds can be told without
    showing it (an HMAC of a fixed text, so it says nothing about the key itself)."""
    return hmac.new(key, b"fileops-approval-key-id", hashlib.sha256).hexdigest()[:16]


def changes_digest(result: Mapping[str, Any], sources: Sequence[Sequence[Any]] = ()) -> str:
    """sha256 of what a simulation says the plan would do: every change, each operation's
    outcome and ``sources``, a listing of what the plan moves, copies or sends to the trash
    (so a file edited or added under a folder since then makes another digest). Two
    simulations with the same digest would change the tree the same way."""
    shown = {
        "sources": [list(entry) for entry in sources],
        "changes": result.get("changes", []),
        "outcomes": [
            [op.get("index"), op.get("type"), op.get("outcome")]
            for op in result.get("operations", [])
        ],
    }
    canonical = json.dumps(shown, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class WakeUp:
    """ "Look up the decision on ``approval_of``": no authority of its own."""

    approval_of: str
    #: The case it names ("" when none): it must be the plan's own (any Unicode spelling).
    case_name: str = ""

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> WakeUp:
        """Read a wake-up strictly: its fields and nothing else (it is never audited or kept
        as a plan, so nothing a sender adds to it could matter; extra keys are refused)."""
        extra = sorted(set(document) - _WAKEUP_FIELDS)
        if extra:
            raise PlanError(
                ErrorCode.SCHEMA_VIOLATION,
                f"a wake-up has only {', '.join(sorted(_WAKEUP_FIELDS))}; "
                f"not {shorten(', '.join(map(str, extra)), 200)}",
            )
        plan_id = document.get("approval_of")
        if not isinstance(plan_id, str) or not 0 < len(plan_id) <= 255:
            raise PlanError(ErrorCode.SCHEMA_VIOLATION, "approval_of must name a plan_id")
        if document.get("plan_id", plan_id) != plan_id:
            raise PlanError(ErrorCode.SCHEMA_VIOLATION, "a wake-up's plan_id is its approval_of")
        if document.get("dry_run", False) is not False:
            raise PlanError(ErrorCode.SCHEMA_VIOLATION, "a wake-up's dry_run is false")
        for name in ("case_name", "requested_by"):
            value = document.get(name, "")
            if not isinstance(value, str) or len(value) > _MAX_TEXT:
                raise PlanError(ErrorCode.SCHEMA_VIOLATION, f"a wake-up's {name} is a short text")
        return cls(approval_of=plan_id, case_name=document.get("case_name", ""))


def is_wakeup(document: Mapping[str, Any]) -> bool:
    return "approval_of" in document and "operations" not in document


def wakeup_document(plan_id: str, case_name: str, by: str) -> dict[str, Any]:
    """The message ``fileops approve``/``reject`` publishes after writing its decision."""
    return {
        "approval_of": plan_id,
        "plan_id": plan_id,
        "case_name": case_name,
        "dry_run": False,
        "requested_by": by,
    }
