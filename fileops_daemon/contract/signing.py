"""Signed plans: HMAC-SHA256 carried in the ``signature`` attribute.

Defence in depth on top of IAM: a plan published by someone who can reach the topic but does
not hold the shared key is refused. The daemon accepts the current and the previous key, so a
key can be rotated without stopping agents (roll the daemon first, then the agents).

``v2=`` (what clients send) covers the data and every attribute the daemon acts on
(:data:`SIGNED_ATTRIBUTES`), in one canonical encoding. ``v1=`` (older clients) covers the
data only: the daemon still accepts it, because the plan's own ``plan_id``/``case_name``/
``dry_run`` are in the data and the attributes must agree with them, but it does not trust a
v1 message's ``client_id`` (a replay could re-route the answer), so its result is published
without routing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from fileops_daemon.contract import attributes as attr
from fileops_daemon.contract.errors import ErrorCode, PlanError

__all__ = [
    "SIGNATURE_ATTRIBUTE",
    "SIGNED_ATTRIBUTES",
    "covers_attributes",
    "load_key",
    "sign",
    "sign_message",
    "signed_payload",
    "verify",
]

SIGNATURE_ATTRIBUTE = attr.SIGNATURE
SIGNED_ATTRIBUTES = attr.PLAN_ATTRIBUTES
_V1, _V2 = "v1=", "v2="
_V2_DOMAIN = b"fileops-plan-v2\n"


def load_key(path: str) -> bytes:
    """Read a key file (one line; surrounding whitespace ignored); refuse an empty one."""
    key = Path(path).read_bytes().strip()
    if len(key) < 16:
        raise ValueError(f"signing key in {path} is shorter than 16 bytes")
    return key


def sign(key: bytes, data: bytes) -> str:
    """The legacy ``v1=`` signature: the data only."""
    return _V1 + hmac.new(key, data, hashlib.sha256).hexdigest()


def signed_payload(data: bytes, attributes: Mapping[str, str]) -> bytes:
    """The bytes a v2 signature covers: a domain tag, the signed attributes as canonical JSON
    (an absent one is null, so absent and empty differ), a newline, then the data. The JSON
    object ends unambiguously, so no two messages share a payload."""
    head = json.dumps(
        {name: attributes.get(name) for name in SIGNED_ATTRIBUTES},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return _V2_DOMAIN + head.encode("ascii") + b"\n" + data


def sign_message(key: bytes, data: bytes, attributes: Mapping[str, str]) -> str:
    """The ``v2=`` signature of a plan message with these attributes."""
    return _V2 + hmac.new(key, signed_payload(data, attributes), hashlib.sha256).hexdigest()


def covers_attributes(attributes: Mapping[str, str]) -> bool:
    """Whether a message's signature (once verified) covers its attributes too (v2)."""
    return attributes.get(SIGNATURE_ATTRIBUTE, "").startswith(_V2)


def verify(keys: Sequence[bytes], data: bytes, attributes: Mapping[str, str]) -> int:
    """The signature's version (1 or 2) if one of ``keys`` made it; else PlanError
    (signature_invalid). Any attribute value, however hostile, ends in one of the two."""
    given = attributes.get(SIGNATURE_ATTRIBUTE)
    if not given:
        raise PlanError(ErrorCode.SIGNATURE_INVALID, "the plan is not signed; plans must be signed")
    try:
        presented = given.encode("ascii")
    except UnicodeEncodeError:
        presented = b""  # compare_digest refuses non-ASCII text; bytes never match then
    if given.startswith(_V2):
        version = 2
        expected = [sign_message(key, data, attributes) for key in keys]
    else:
        version = 1
        expected = [sign(key, data) for key in keys]
    matched = False
    for candidate in expected:  # every key, so the time does not say which one matched
        matched |= hmac.compare_digest(candidate.encode("ascii"), presented)
    if matched:
        return version
    raise PlanError(ErrorCode.SIGNATURE_INVALID, "the plan's signature does not match")
