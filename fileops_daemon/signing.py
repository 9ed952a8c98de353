"""Signed plans: HMAC-SHA256 over the message data, carried in the ``signature`` attribute.

Defence in depth on top of IAM: a plan published by someone who can reach the topic but does
not hold the shared key is refused. The daemon accepts the current and the previous key, so a
key can be rotated without stopping agents (roll the daemon first, then the agents).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from pathlib import Path

from fileops_daemon.errors import ErrorCode, PlanError

__all__ = ["SIGNATURE_ATTRIBUTE", "load_key", "sign", "verify"]

SIGNATURE_ATTRIBUTE = "signature"
_PREFIX = "v1="


def load_key(path: str) -> bytes:
    """Read a key file (one line; surrounding whitespace ignored); refuse an empty one."""
    key = Path(path).read_bytes().strip()
    if len(key) < 16:
        raise ValueError(f"signing key in {path} is shorter than 16 bytes")
    return key


def sign(key: bytes, data: bytes) -> str:
    return _PREFIX + hmac.new(key, data, hashlib.sha256).hexdigest()


def verify(keys: Sequence[bytes], data: bytes, attributes: Mapping[str, str]) -> None:
    """Raise PlanError(signature_invalid) unless one of ``keys`` signed ``data``."""
    given = attributes.get(SIGNATURE_ATTRIBUTE)
    if not given:
        raise PlanError(ErrorCode.SIGNATURE_INVALID, "the plan is not signed; plans must be signed")
    for key in keys:
        if hmac.compare_digest(sign(key, data), given):
            return
    raise PlanError(ErrorCode.SIGNATURE_INVALID, "the plan's signature does not match")
