"""The plan model: parse a plan document, validate it against the schema and the limits.

The schema file in ``schemas/`` is the single source of truth for the document's shape;
this module adds what a schema cannot say (byte limits, base64 content); the digest that
stands for the plan's identity is in ``identity``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from fileops_daemon.contract.errors import ErrorCode, PlanError, shorten
from fileops_daemon.contract.identity import legacy_plan_digest, plan_digest
from fileops_daemon.contract.limits import Limits

__all__ = [
    "Expect",
    "Operation",
    "OperationType",
    "Plan",
    "decode_document",
    "decode_json",
    "is_undo_plan_id",
    "load_schema",
    "parse_plan",
    "plan_digest",
    "undo_plan_id",
]

OperationType = Literal["mkdir", "move", "copy", "delete", "write"]

#: plan_id is at most this long (plan.schema.json).
_MAX_PLAN_ID = 200
_UNDO_SUFFIX = ".undo"
_UNDO_DIGEST_CHARS = 32
# The plain form (".undo") and the hashed one (".undo-<32 hex>") end differently, so they never
# meet; matched case-insensitively, so a look-alike cannot take one on a case-folding store.
_UNDO_ID = re.compile(r"\.undo(?:-[0-9a-f]{32})?\Z", re.IGNORECASE)


def undo_plan_id(plan_id: str) -> str:
    """The id of ``plan_id``'s undo plan: ``<id>.undo``; for an id over 195 characters, a
    prefix and a hash, ``<first 162>.undo-<sha256[:32]>`` (always a valid plan_id)."""
    plain = f"{plan_id}{_UNDO_SUFFIX}"
    if len(plain) <= _MAX_PLAN_ID:
        return plain
    digest = hashlib.sha256(plan_id.encode("utf-8", "surrogatepass")).hexdigest()
    keep = _MAX_PLAN_ID - len(_UNDO_SUFFIX) - 1 - _UNDO_DIGEST_CHARS
    return f"{plan_id[:keep]}{_UNDO_SUFFIX}-{digest[:_UNDO_DIGEST_CHARS]}"


def is_undo_plan_id(plan_id: str) -> bool:
    """Whether ``plan_id`` has the form reserved for undo plans (made only by fileops)."""
    return _UNDO_ID.search(plan_id) is not None


@cache
def load_schema(name: str) -> dict[str, Any]:
    """Load ``plan`` or ``result`` schema: package data when installed, the repo's otherwise."""
    filename = f"{name}.schema.json"
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # Package data on disk, or the source tree's schemas/ (an editable install runs from
    # there); importlib.resources (~10 ms to import) only for a package that is not on disk.
    for folder in (package, os.path.dirname(package)):
        path = os.path.join(folder, "schemas", filename)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            break
    else:
        from importlib import resources

        text = resources.files("fileops_daemon").joinpath("schemas", filename).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _plan_validator() -> Any:
    from jsonschema import Draft202012Validator  # imported late: it costs ~70 ms

    schema = load_schema("plan")
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@dataclass(frozen=True)
class Expect:
    """What the plan's author saw at the source; checked before anything changes."""

    size: int | None = None
    sha256: str | None = None
    #: A folder: how many files it holds at any depth (an undo's delete of a folder the plan
    #: made says 0: whatever someone put there since is never trashed by the undo).
    files: int | None = None


@dataclass(frozen=True)
class Operation:
    index: int
    type: OperationType
    path: str | None = None
    src: str | None = None
    dst: str | None = None
    overwrite: bool = False
    content: bytes | None = None
    expect: Expect | None = None

    def paths(self) -> list[tuple[str, str]]:
        """(field name, raw path) pairs this operation names, for confinement checks."""
        pairs = [("path", self.path), ("from", self.src), ("to", self.dst)]
        return [(name, value) for name, value in pairs if value is not None]


@dataclass(frozen=True)
class Plan:
    plan_id: str
    case_name: str
    dry_run: bool
    operations: tuple[Operation, ...]
    digest: str
    requested_by: str | None = None
    reason: str | None = None
    undo_of: str | None = None
    document: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def matches_digest(self, recorded: object) -> bool:
        """Whether a digest recorded for this plan_id (ledger, journal, stored result) is
        this plan's: in the current form, or in the form earlier versions recorded."""
        if recorded == self.digest:
            return True
        return (
            isinstance(recorded, str)
            and bool(self.document)
            and (recorded == legacy_plan_digest(self.document))
        )


#: Nesting a plan needs is 4 (plan, operations, an operation, its expect); a deeper document
#: is refused before anything recursive (the reference validator, repr, the digest) sees it.
MAX_NESTING = 32
#: Digits of one JSON number; a size fits in 20. Python refuses ints over 4,300 digits anyway,
#: with a ValueError that would otherwise look like a bug.
MAX_NUMBER_CHARS = 64


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; a key given twice is refused (readers disagree on which one wins)."""
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                raise PlanError(
                    ErrorCode.DUPLICATE_KEY,
                    f"the key {shorten(repr(key), 80)} appears twice in one object; "
                    "each key may appear once",
                )
            seen.add(key)
    return document


def _integer(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise PlanError(
            ErrorCode.LIMIT_EXCEEDED,
            f"a number in the plan has {len(text)} digits; the limit is {MAX_NUMBER_CHARS}",
        )
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS or not math.isfinite(value := float(text)):
        raise PlanError(ErrorCode.LIMIT_EXCEEDED, "a number in the plan is too long or too large")
    return value


def _constant(name: str) -> Any:
    raise PlanError(ErrorCode.INVALID_JSON, f"plan is not JSON: {name} is not a JSON value")


def decode_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, no NaN/Infinity, bounded numbers and nesting.

    Every way it refuses is a PlanError; nothing else escapes (a hostile message must get an
    answer, not an exception).
    """
    try:
        return json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_object,
            parse_int=_integer,
            parse_float=_float,
            parse_constant=_constant,
        )
    except RecursionError:
        raise PlanError(
            ErrorCode.LIMIT_EXCEEDED, f"plan is nested more than {MAX_NESTING} levels deep"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanError(
            ErrorCode.INVALID_JSON, f"plan is not UTF-8 JSON: {shorten(str(exc), 200)}"
        ) from None
    except ValueError as exc:  # any other refusal of the decoder
        raise PlanError(
            ErrorCode.INVALID_JSON, f"plan is not acceptable JSON: {shorten(str(exc), 200)}"
        ) from None


def _check_nesting(document: Any) -> None:
    """Refuse a document nested deeper than MAX_NESTING (iteratively: no recursion)."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_NESTING:
            raise PlanError(
                ErrorCode.LIMIT_EXCEEDED, f"plan is nested more than {MAX_NESTING} levels deep"
            )
        children = value.values() if isinstance(value, dict) else value
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def decode_document(data: bytes | str | Mapping[str, Any], limits: Limits) -> dict[str, Any]:
    """A plan message's JSON object, checked for size, strict JSON and depth; PlanError if not."""
    if isinstance(data, Mapping):
        return dict(data)
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError:
            raise PlanError(ErrorCode.INVALID_JSON, "plan is not valid Unicode text") from None
    else:
        raw = data
    if len(raw) > limits.max_plan_bytes:
        raise PlanError(
            ErrorCode.LIMIT_EXCEEDED,
            f"plan is {len(raw)} bytes; the limit is {limits.max_plan_bytes}",
        )
    document = decode_json(raw)
    if not isinstance(document, dict):
        raise PlanError(ErrorCode.SCHEMA_VIOLATION, "plan must be a JSON object")
    return document


def _where(error: Any) -> str:
    parts = []
    for item in error.absolute_path:
        parts.append(f"[{item}]" if isinstance(item, int) else f".{item}")
    return "plan" + "".join(parts)


@cache
def _fast_validator() -> Any:
    # jsonschema-rs checks a 10,000-operation plan in ~8 ms where jsonschema takes ~450 ms;
    # the same schema file drives both, and jsonschema explains what is wrong.
    import jsonschema_rs

    return jsonschema_rs.validator_for(load_schema("plan"))


def _fast_verdict(document: dict[str, Any]) -> bool:
    try:
        return bool(_fast_validator().is_valid(document))
    except Exception:  # e.g. a lone surrogate it cannot convert: let the reference decide
        return False


#: How much of a schema error's text a refusal carries (jsonschema quotes the whole value).
_SCHEMA_MESSAGE_CHARS = 300


_SURROGATE = re.compile("[\ud800-\udfff]")
#: Fields that reach results, attributes, object names and logs as they are.
_TEXT_FIELDS = ("plan_id", "case_name", "undo_of", "requested_by", "reason")


def _check_text_fields(document: dict[str, Any]) -> None:
    """JSON lets ``\\ud800`` through; such a string cannot be encoded or published."""
    for name in _TEXT_FIELDS:
        value = document.get(name)
        if isinstance(value, str) and not value.isascii() and _SURROGATE.search(value):
            raise PlanError(
                ErrorCode.SCHEMA_VIOLATION,
                f"plan.{name} is not valid Unicode text (it holds an unpaired surrogate)",
            )


def _check_schema(document: dict[str, Any]) -> None:
    _check_text_fields(document)
    if _fast_verdict(document):
        return  # a valid plan is 4 levels deep: only a refusal needs the nesting check
    _check_nesting(document)
    from jsonschema.exceptions import best_match

    error = best_match(_plan_validator().iter_errors(document))
    if error is None:  # the two validators disagree: trust neither, refuse
        raise PlanError(ErrorCode.SCHEMA_VIOLATION, "plan does not match plan.schema.json")
    path = list(error.absolute_path)
    index = path[1] if len(path) > 1 and path[0] == "operations" else None
    try:
        hint = _did_you_mean(document, error)
    except (KeyError, IndexError, TypeError, ValueError):  # a hint must never cost the answer
        hint = ""
    raise PlanError(
        ErrorCode.SCHEMA_VIOLATION,
        shorten(f"{_where(error)}: {error.message}", _SCHEMA_MESSAGE_CHARS - len(hint)) + hint,
        operation=index if isinstance(index, int) else None,
    )


def _known_fields(document: dict[str, Any], path: list[Any]) -> tuple[Any, list[str]]:
    """The object at ``path`` and the field names the schema allows there (none if unknown)."""
    schema = load_schema("plan")
    target: Any = document
    for part in path:
        target = target[part]
    if not isinstance(target, dict):
        return target, []
    if not path:
        return target, list(schema["properties"])
    if len(path) == 2 and path[0] == "operations":
        operation = schema["$defs"]["operation"]
        for rule in operation["allOf"]:  # a type allows only some of the fields
            if rule["if"]["properties"]["type"]["const"] == target.get("type"):
                return target, list(rule["then"]["propertyNames"]["enum"])
        return target, list(operation["properties"])
    if len(path) == 3 and path[2] == "expect":
        return target, list(schema["$defs"]["expect"]["properties"])
    return target, []


def _did_you_mean(document: dict[str, Any], error: Any) -> str:
    """`` (did you mean 'from' for 'form'?)`` when a refusal is about a name close to an
    allowed one: a misspelt field or operation type. Only the text changes, not the code."""
    import difflib

    if error.validator == "enum" and isinstance(error.instance, str):
        typed, allowed = error.instance, [str(value) for value in error.validator_value]
    elif error.validator in ("additionalProperties", "required"):
        target, allowed = _known_fields(document, list(error.absolute_path))
        unknown = [key for key in target if key not in allowed] if allowed else []
        if not unknown:
            return ""
        typed = unknown[0]
    else:
        return ""
    close = difflib.get_close_matches(typed, allowed, n=1, cutoff=0.6)
    if not close or close[0] == typed:
        return ""
    return f" (did you mean {close[0]!r} for {shorten(typed, 60)!r}?)"


def _content(item: Mapping[str, Any], index: int, limits: Limits) -> bytes:
    text: str = item["content"]
    if item.get("encoding", "text") == "base64":
        try:
            content = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise PlanError(
                ErrorCode.CONTENT_INVALID,
                f"operations[{index}].content is not valid base64: {exc}",
                operation=index,
            ) from exc
    else:
        try:
            content = text.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates survive json.loads
            raise PlanError(
                ErrorCode.CONTENT_INVALID,
                f"operations[{index}].content is not valid Unicode text",
                operation=index,
            ) from exc
    if len(content) > limits.max_write_bytes:
        raise PlanError(
            ErrorCode.LIMIT_EXCEEDED,
            f"operations[{index}] writes {len(content)} bytes; the limit is "
            f"{limits.max_write_bytes}",
            operation=index,
        )
    return content


def _operation(item: Mapping[str, Any], index: int, limits: Limits) -> Operation:
    expect = item.get("expect")
    return Operation(
        index=index,
        type=item["type"],
        path=item.get("path"),
        src=item.get("from"),
        dst=item.get("to"),
        overwrite=bool(item.get("overwrite", False)),
        content=_content(item, index, limits) if item["type"] == "write" else None,
        expect=Expect(
            size=expect.get("size"), sha256=expect.get("sha256"), files=expect.get("files")
        )
        if expect
        else None,
    )


def _check_undo_claim(document: Mapping[str, Any], undo_of: str | None) -> None:
    """Only fileops makes undo plans (``undo.build_undo_plan``, which passes ``undo_of``):
    a plan that claims ``undo_of`` or takes an undo plan's id is refused."""
    plan_id = document.get("plan_id")
    if undo_of is None:
        if "undo_of" in document:
            raise PlanError(
                ErrorCode.UNDO_FORGED,
                "undo_of is set only by fileops on the undo plans it makes; to undo a plan, "
                'send an undo request ({"undo_of": PLAN_ID}, no operations)',
            )
        if isinstance(plan_id, str) and is_undo_plan_id(plan_id):
            raise PlanError(
                ErrorCode.UNDO_FORGED,
                "plan_ids ending in '.undo' are reserved for the undo plans fileops makes",
            )
    elif document.get("undo_of") != undo_of or plan_id != undo_plan_id(undo_of):
        raise PlanError(ErrorCode.UNDO_FORGED, f"not the undo plan of {undo_of!r}")


def parse_plan(
    data: bytes | str | Mapping[str, Any],
    limits: Limits | None = None,
    *,
    undo_of: str | None = None,
) -> Plan:
    """Parse and validate a plan document; raise PlanError with a stable code when it is bad.

    ``undo_of`` is passed only by fileops when it builds an undo plan from its stored inverse;
    any other plan claiming to be an undo is refused (``undo_forged``). Confinement of the
    paths is checked separately (``paths``), against the case name.
    """
    limits = limits or Limits()
    document = decode_document(data, limits)
    _check_undo_claim(document, undo_of)
    operations = document.get("operations")
    # Checked before the schema so that a huge plan is refused cheaply.
    if isinstance(operations, list) and len(operations) > limits.max_operations:
        raise PlanError(
            ErrorCode.LIMIT_EXCEEDED,
            f"plan has {len(operations)} operations; the limit is {limits.max_operations}",
        )
    _check_schema(document)
    assert isinstance(operations, list)  # the schema says so
    return Plan(
        plan_id=document["plan_id"],
        case_name=document["case_name"],
        dry_run=document.get("dry_run", True),
        operations=tuple(_operation(item, i, limits) for i, item in enumerate(operations)),
        digest=plan_digest(document),
        requested_by=document.get("requested_by"),
        reason=document.get("reason"),
        undo_of=document.get("undo_of"),
        document=document,
    )
