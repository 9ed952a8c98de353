"""Hostile plan messages (issue 10): bytes a compromised agent can publish, with the code each
must be refused with. Used by the fast parse tests (tests/contract/test_plan.py) and, through
the daemon on the emulators, by tests/service/test_daemon.py."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tests.support import CASE


@dataclass(frozen=True)
class Hostile:
    name: str
    data: bytes
    code: str
    #: Attributes as a publisher would set them; the daemon must not trust any of them.
    attributes: dict[str, str] = field(default_factory=dict)


def _raw(template: str) -> bytes:
    """JSON text written by hand (what json.dumps cannot produce); ``@`` is the case name."""
    return template.replace("@", CASE).encode("utf-8")


def _doc(**fields: object) -> bytes:
    document = {"plan_id": "hostile-1", "case_name": CASE, "dry_run": False}
    document["operations"] = [{"type": "mkdir", "path": f"{CASE}/x"}]
    return json.dumps({**document, **fields}).encode("utf-8")


_DELETE = '{"plan_id":"%s","case_name":"@","operations":[{"type":"delete","path":"@/x",'

MESSAGES: list[Hostile] = [
    Hostile(
        "nested-1000-deep",
        _raw('{"plan_id":"deep-1","case_name":"@","operations":' + "[" * 1000 + "]" * 1000 + "}"),
        "limit_exceeded",
        {"plan_id": "deep-1", "case_name": CASE},
    ),
    Hostile(
        "nested-500-deep-in-expect",
        _raw(_DELETE.replace("%s", "deep-2") + '"expect":' + "[" * 500 + "]" * 500 + "}]}"),
        "limit_exceeded",
    ),
    Hostile(
        "integer-of-5000-digits",
        _raw(_DELETE.replace("%s", "bigint-1") + '"expect":{"size":' + "9" * 5000 + "}}]}"),
        "limit_exceeded",
    ),
    Hostile(
        "float-of-66-characters-with-an-exponent",
        _raw(_DELETE.replace("%s", "bigfloat-1") + '"expect":{"size":1.' + "0" * 62 + "e5}}]}"),
        "limit_exceeded",
    ),
    Hostile(
        "nan",
        _raw('{"plan_id":"nan-1","case_name":"@","dry_run":NaN,"operations":[]}'),
        "invalid_json",
    ),
    Hostile(
        "lone-surrogate-in-plan-id",
        _raw('{"plan_id":"s\\ud800","case_name":"@","operations":[{"type":"mkdir","path":"@/x"}]}'),
        "schema_violation",
    ),
    Hostile(
        "lone-surrogate-in-case-name",
        _raw('{"plan_id":"s-2","case_name":"c\\udfff","operations":[{"type":"mkdir","path":"x"}]}'),
        "schema_violation",
    ),
    Hostile(
        "newline-in-plan-id",
        _doc(plan_id="nl-1\n../../x"),
        "schema_violation",
        {"plan_id": "nl-1\n../../x", "case_name": CASE},
    ),
    Hostile(
        "plan-id-over-1024-bytes",
        _doc(plan_id="L" * 1500),
        "schema_violation",
        {"plan_id": "L" * 1000, "case_name": CASE},
    ),
    Hostile(
        "duplicate-dry-run",
        _raw(
            '{"plan_id":"dup-1","case_name":"@","dry_run":true,"dry_run":false,'
            '"operations":[{"type":"mkdir","path":"@/x"}]}'
        ),
        "duplicate_key",
        {"plan_id": "dup-1", "case_name": CASE, "dry_run": "true"},
    ),
    Hostile(
        "duplicate-move-target",
        _raw(
            '{"plan_id":"dup-2","case_name":"@","dry_run":false,"operations":[{"type":"move",'
            '"from":"@/uncategorized/file1.pdf","to":"@/a.pdf","to":"@/Investigation/b.pdf"}]}'
        ),
        "duplicate_key",
    ),
    Hostile(
        "schema-error-quoting-a-megabyte",
        _doc(operations=[{"type": "mkdir", "path": f"{CASE}/x", "junk": "y" * (1 << 20)}]),
        "schema_violation",
    ),
]
