"""The one gate every plan path goes through (lexical confinement to the plan's case folder).

A path is split into components, each normalised to NFC and checked on its own; the first must
equal the case name. Comparison is by components, never by string prefix, so ``case-evil`` is
not inside ``case``. What the disk holds (symlinks, look-alike spellings, mounts) is checked by
``tree`` when the path is resolved, and again by ``fsops`` at the moment of use.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.contract.limits import GCS_OBJECT_NAME_MAX_BYTES, NAME_MAX_BYTES

__all__ = ["WORK_DIR_NAME", "CasePath", "check_case_name", "confine", "looks_like", "nfc"]

#: The daemon's own folder inside each case (trash and staging); plans may not touch it.
WORK_DIR_NAME = ".fileops"

# Bidirectional controls disguise names ("invoice\u202efdp.exe" shows as "invoiceexe.pdf").
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


# Control characters (Unicode category Cc: C0, DEL, C1), unpaired surrogates, bidi controls
# and the backslash; one regex instead of a per-character loop (plans hold 10,000 paths).
_FORBIDDEN = re.compile(
    "[\x00-\x1f\x7f-\x9f\\\\\ud800-\udfff" + "".join(sorted(_BIDI_CONTROLS)) + "]"
)


# Default-ignorable code points (invisible: zero-width space and joiners, word joiner, BOM,
# soft hyphen, variation selectors, ...): a name with them added looks like the name without.
_IGNORABLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


def looks_like(name: str, reserved: str) -> bool:
    """Whether ``name`` reads as ``reserved`` once case, compatibility forms (fullwidth,
    ligatures) and invisible characters are folded away."""
    if name.isascii():
        return name.lower() == reserved
    folded = unicodedata.normalize("NFKC", _IGNORABLE.sub("", name)).casefold()
    return _IGNORABLE.sub("", folded) == reserved


def nfc(text: str) -> str:
    # ASCII is its own normal form: skip the library call on the common path.
    return text if text.isascii() else unicodedata.normalize("NFC", text)


@dataclass(frozen=True)
class CasePath:
    """A confined path: ``parts`` are NFC components below the case folder (never empty)."""

    case: str
    parts: tuple[str, ...]

    def __str__(self) -> str:
        return "/".join((self.case, *self.parts))


def _refuse(code: ErrorCode, message: str, operation: int | None, raw: str) -> PlanError:
    return PlanError(code, message, operation=operation, path=raw)


def _check_characters(raw: str, what: str, operation: int | None) -> None:
    found = _FORBIDDEN.search(raw)
    if found is None:
        return
    char = found.group()
    if char == "\\":
        message = f"{what} contains a backslash; separate folders with '/'"
    elif unicodedata.category(char) == "Cs":
        message = f"{what} contains an unpaired surrogate"
    elif char in _BIDI_CONTROLS:
        message = f"{what} contains the bidirectional control U+{ord(char):04X}"
    else:
        message = f"{what} contains the control character U+{ord(char):04X}"
    raise _refuse(ErrorCode.PATH_INVALID, message, operation, raw)


def check_case_name(case_name: str) -> str:
    """Return the NFC case name, or raise if it is not one plain folder name."""
    _check_characters(case_name, "case_name", None)
    name = nfc(case_name)
    if not name or "/" in name or name.startswith("."):
        raise PlanError(
            ErrorCode.PATH_INVALID,
            "case_name must be one folder name that does not start with '.'",
            path=case_name,
        )
    if len(name.encode("utf-8")) > NAME_MAX_BYTES:
        raise PlanError(
            ErrorCode.PATH_INVALID,
            f"case_name is longer than {NAME_MAX_BYTES} bytes",
            path=case_name,
        )
    return name


def confine(
    raw: str,
    case_name: str,
    *,
    operation: int | None = None,
    trash_of: str | None = None,
) -> CasePath:
    """Check one plan path lexically and return its confined form.

    ``trash_of`` names a plan whose trash folder this path may lie in (undo plans only).
    """
    _check_characters(raw, "path", operation)
    if raw.startswith("/"):
        raise _refuse(
            ErrorCode.PATH_INVALID,
            "path is absolute; paths are relative to the projects root and start with the case",
            operation,
            raw,
        )
    components = raw.split("/")
    if "" in components:
        raise _refuse(
            ErrorCode.PATH_INVALID,
            "path has an empty component ('//' or a leading or trailing '/')",
            operation,
            raw,
        )
    ascii_only = raw.isascii()
    parts = tuple(components) if ascii_only else tuple(nfc(part) for part in components)
    if "." in parts or ".." in parts:
        raise _refuse(ErrorCode.PATH_INVALID, "path has a '.' or '..' component", operation, raw)
    size = len(raw) if ascii_only else len("/".join(parts).encode("utf-8"))
    if size > GCS_OBJECT_NAME_MAX_BYTES:
        raise _refuse(
            ErrorCode.PATH_INVALID,
            f"path is {size} bytes; object names are limited to {GCS_OBJECT_NAME_MAX_BYTES}",
            operation,
            raw,
        )
    for part in parts:
        if len(part) > NAME_MAX_BYTES // 4 and len(part.encode("utf-8")) > NAME_MAX_BYTES:
            raise _refuse(
                ErrorCode.PATH_INVALID,
                f"a name in the path is longer than {NAME_MAX_BYTES} bytes",
                operation,
                raw,
            )
    case = nfc(case_name)
    if parts[0] != case:
        raise _refuse(
            ErrorCode.PATH_OUTSIDE_CASE,
            f"path must start with the case folder {case!r}",
            operation,
            raw,
        )
    inner = parts[1:]
    if not inner:
        raise _refuse(
            ErrorCode.PATH_RESERVED,
            "the case folder itself cannot be changed; name something inside it",
            operation,
            raw,
        )
    if inner[0] != WORK_DIR_NAME and looks_like(inner[0], WORK_DIR_NAME):
        # Security: ".FILEOPS" or ".fileops" + U+200B would pass for our folder on screen
        # (and be our folder on a case-folding store).
        raise _refuse(
            ErrorCode.PATH_RESERVED,
            f"{inner[0]!r} looks like fileops' own {WORK_DIR_NAME}/ folder; choose another name",
            operation,
            raw,
        )
    if inner[0] == WORK_DIR_NAME:
        allowed = trash_of is not None and inner[1:3] == (trash_of, "trash") and len(inner) > 3
        if not allowed:
            raise _refuse(
                ErrorCode.PATH_RESERVED,
                f"{WORK_DIR_NAME}/ holds fileops' own trash and staging; plans cannot touch it",
                operation,
                raw,
            )
    return CasePath(case=case, parts=inner)
