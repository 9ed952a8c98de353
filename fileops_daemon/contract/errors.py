"""Stable error codes of the wire contract, and the exception that carries one.

The codes are part of the result schema (``schemas/result.schema.json``); adding one is a
contract change, renaming one is a breaking change.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "DESCRIPTIONS",
    "MAX_MESSAGE_CHARS",
    "ErrorCode",
    "PlanError",
    "shorten",
    "valid_utf8",
]

#: Longest error message a result carries; longer ones are cut with a marker.
MAX_MESSAGE_CHARS = 1000


class ErrorCode(StrEnum):
    """Why a plan was refused or failed. Values never change once published."""

    INVALID_JSON = "invalid_json"
    SCHEMA_VIOLATION = "schema_violation"
    LIMIT_EXCEEDED = "limit_exceeded"
    CONTENT_INVALID = "content_invalid"
    PATH_INVALID = "path_invalid"
    PATH_OUTSIDE_CASE = "path_outside_case"
    PATH_RESERVED = "path_reserved"
    PATH_AMBIGUOUS = "path_ambiguous"
    SYMLINK_REFUSED = "symlink_refused"
    MOUNT_CROSSING = "mount_crossing"
    CASE_MISSING = "case_missing"
    SOURCE_MISSING = "source_missing"
    DESTINATION_EXISTS = "destination_exists"
    PARENT_MISSING = "parent_missing"
    TYPE_CONFLICT = "type_conflict"
    MOVE_INTO_ITSELF = "move_into_itself"
    PRECONDITION_FAILED = "precondition_failed"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    PLAN_BUSY = "plan_busy"
    TREE_CHANGED = "tree_changed"
    IO_ERROR = "io_error"
    UNDO_UNAVAILABLE = "undo_unavailable"
    SIGNATURE_INVALID = "signature_invalid"
    INTERNAL_ERROR = "internal_error"
    DUPLICATE_KEY = "duplicate_key"
    UNDO_FORGED = "undo_forged"
    STATE_INVALID = "state_invalid"
    APPROVAL_REJECTED = "approval_rejected"
    APPROVAL_EXPIRED = "approval_expired"
    APPROVAL_MISSING = "approval_missing"
    APPROVAL_FORGED = "approval_forged"


#: One line per code, used by docs/contract.md (a test checks it) and ``fileops --help``.
DESCRIPTIONS: dict[ErrorCode, str] = {
    ErrorCode.INVALID_JSON: "the message is not UTF-8 JSON",
    ErrorCode.SCHEMA_VIOLATION: "the plan does not match plan.schema.json",
    ErrorCode.LIMIT_EXCEEDED: "more operations, deletes, steps or bytes than the limits allow",
    ErrorCode.CONTENT_INVALID: "a write's content is not valid base64 (or not valid text)",
    ErrorCode.PATH_INVALID: (
        "a path is absolute, has '.', '..' or empty components, control or bidi characters, "
        "a backslash, or is too long"
    ),
    ErrorCode.PATH_OUTSIDE_CASE: "a path does not start with the plan's case_name",
    ErrorCode.PATH_RESERVED: "a path targets the case root itself or the daemon's .fileops folder",
    ErrorCode.PATH_AMBIGUOUS: "two names on disk are the same after Unicode normalisation",
    ErrorCode.SYMLINK_REFUSED: "a symbolic link stands on the path; links are never followed",
    ErrorCode.MOUNT_CROSSING: "the path crosses into another filesystem",
    ErrorCode.CASE_MISSING: "the case folder does not exist under the projects root",
    ErrorCode.SOURCE_MISSING: "a move, copy or delete names something that does not exist",
    ErrorCode.DESTINATION_EXISTS: "the destination exists and overwrite is false",
    ErrorCode.PARENT_MISSING: "the destination's parent folder does not exist",
    ErrorCode.TYPE_CONFLICT: "a file stands where a folder is needed, or the other way round",
    ErrorCode.MOVE_INTO_ITSELF: "a folder cannot be moved into itself",
    ErrorCode.PRECONDITION_FAILED: "a source's size or sha256 differs from what the plan expects",
    ErrorCode.IDEMPOTENCY_CONFLICT: "this plan_id was already used for a plan with other content",
    ErrorCode.PLAN_BUSY: "another process is applying this plan or this case right now",
    ErrorCode.TREE_CHANGED: (
        "the tree changed between the check and the step (rolled back), or since the "
        "simulation an operator approved (nothing changed)"
    ),
    ErrorCode.IO_ERROR: "the filesystem failed (EIO, ESTALE, ...) after retries",
    ErrorCode.UNDO_UNAVAILABLE: "no inverse plan is stored for this plan_id",
    ErrorCode.UNDO_FORGED: (
        "a plan claims undo_of or takes an undo plan's id ('.undo'); only fileops makes undo plans"
    ),
    ErrorCode.STATE_INVALID: (
        "a journal or ledger checkpoint read back does not match the plan or fails the path gate"
    ),
    ErrorCode.SIGNATURE_INVALID: "the plan is unsigned or its HMAC signature does not match",
    ErrorCode.INTERNAL_ERROR: "a bug in fileops-daemon; the plan was not applied",
    ErrorCode.DUPLICATE_KEY: "a JSON object in the plan names the same key twice",
    ErrorCode.APPROVAL_REJECTED: "an operator rejected the plan while it awaited approval",
    ErrorCode.APPROVAL_EXPIRED: "nobody approved the plan within FILEOPS_APPROVAL_TTL",
    ErrorCode.APPROVAL_MISSING: (
        "an approval wake-up names a plan with no awaiting record or no recorded decision"
    ),
    ErrorCode.APPROVAL_FORGED: (
        "an approval decision is not signed with the approval key, or names another digest"
    ),
}


class PlanError(Exception):
    """A plan problem with a stable code; ``operation`` is the index it concerns, if any."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        operation: int | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.operation = operation
        self.path = path

    def to_dict(self) -> dict[str, object]:
        message = shorten(valid_utf8(self.message), MAX_MESSAGE_CHARS)
        doc: dict[str, object] = {"code": self.code.value, "message": message}
        if self.operation is not None:
            doc["operation"] = self.operation
        if self.path is not None:  # the schema caps a plan's path at 4,096 characters
            doc["path"] = shorten(valid_utf8(self.path), 4096)
        return doc


def valid_utf8(text: str) -> str:
    """Text that can be encoded as UTF-8: a hostile path's lone surrogates become U+FFFD."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    kept = max(0, limit - 40)  # room for the marker
    return f"{text[:kept]}... ({len(text) - kept} more characters)"
