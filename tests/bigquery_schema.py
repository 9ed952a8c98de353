"""Checks a JSON record against a BigQuery table schema (BigQuery's JSON schema format: a list
of ``{name, type, mode, fields}``) the way a load of NEWLINE_DELIMITED_JSON with
``ignoreUnknownValues=false`` would: every key must be a column, REQUIRED columns present and
not null, REPEATED ones lists (no null in them), NULLABLE ones absent, null or of their type,
RECORD columns checked inside; and each audit object must be one line (one NDJSON row).

The audit schemas live in ``schemas/``; ``audit_problems`` checks every audit object of a
bucket, and ``tests/conftest_daemon.py`` runs it on every test stack's audit bucket.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
AUDIT_SCHEMA = SCHEMAS / "audit.bigquery.json"
APPROVAL_AUDIT_SCHEMA = SCHEMAS / "approval-audit.bigquery.json"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,299}")
_TYPES = {"STRING", "BYTES", "INTEGER", "FLOAT", "BOOLEAN", "TIMESTAMP", "RECORD", "JSON"}
_MODES = {"NULLABLE", "REQUIRED", "REPEATED"}
# BigQuery's canonical timestamp in JSON loads: date, T or space, time, up to 6 decimals,
# then Z, an offset or nothing (UTC).
_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2}| ?UTC)?"
)
#: JSON numbers beyond this lose digits on the way into an INTEGER column.
_SAFE_INTEGER = 2**53 - 1


def load(path: Path) -> list[dict[str, Any]]:
    fields: list[dict[str, Any]] = json.loads(path.read_text())
    problems = schema_problems(fields)
    assert not problems, f"{path.name}: {problems}"
    return fields


def schema_problems(fields: list[dict[str, Any]], where: str = "") -> list[str]:
    """What BigQuery would refuse in the schema itself."""
    problems: list[str] = []
    seen: set[str] = set()
    for field in fields:
        name = field.get("name", "")
        path = f"{where}{name}"
        if not _NAME.fullmatch(name):
            problems.append(f"{path!r}: not a column name")
        if name.lower() in seen:
            problems.append(f"{path}: twice (column names ignore case)")
        seen.add(name.lower())
        if field.get("type") not in _TYPES:
            problems.append(f"{path}: type {field.get('type')!r}")
        if field.get("mode", "NULLABLE") not in _MODES:
            problems.append(f"{path}: mode {field.get('mode')!r}")
        if (field.get("type") == "RECORD") != ("fields" in field):
            problems.append(f"{path}: fields only and always on a RECORD")
        if field.get("type") == "RECORD":
            problems += schema_problems(field.get("fields", []), f"{path}.")
        extra = set(field) - {"name", "type", "mode", "fields", "description"}
        if extra:
            problems.append(f"{path}: unknown keys {sorted(extra)}")
    return problems


def problems(record: Any, fields: list[dict[str, Any]], where: str = "") -> list[str]:
    """What a load of ``record`` into a table of ``fields`` would refuse (empty: none)."""
    if not isinstance(record, dict):
        return [f"{where or 'the record'}: not an object"]
    found: list[str] = []
    by_name = {field["name"]: field for field in fields}
    for key in record:
        if key not in by_name:
            found.append(f"{where}{key}: no such column")
    for name, field in by_name.items():
        path = f"{where}{name}"
        mode = field.get("mode", "NULLABLE")
        value = record.get(name)
        if mode == "REPEATED":
            if name not in record:
                continue
            if not isinstance(value, list):
                found.append(f"{path}: REPEATED needs a list, not {_show(value)}")
                continue
            for index, item in enumerate(value):
                if item is None:
                    found.append(f"{path}[{index}]: null in a REPEATED column")
                else:
                    found += _value_problems(item, field, f"{path}[{index}]")
        elif value is None:
            if mode == "REQUIRED":
                found.append(f"{path}: REQUIRED, but {'null' if name in record else 'missing'}")
        else:
            found += _value_problems(value, field, path)
    return found


def _value_problems(value: Any, field: dict[str, Any], path: str) -> list[str]:
    kind = field["type"]
    if kind == "RECORD":
        return problems(value, field["fields"], f"{path}.")
    ok = {
        "STRING": lambda: isinstance(value, str),
        "BYTES": lambda: isinstance(value, str) and _is_base64(value),
        "INTEGER": lambda: type(value) is int and abs(value) <= _SAFE_INTEGER,
        "FLOAT": lambda: type(value) in (int, float) and math.isfinite(value),
        "BOOLEAN": lambda: isinstance(value, bool),
        "TIMESTAMP": lambda: isinstance(value, str) and _is_timestamp(value),
        "JSON": lambda: True,
    }[kind]()
    return [] if ok else [f"{path}: {_show(value)} is not a {kind}"]


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _is_timestamp(text: str) -> bool:
    if not _TIMESTAMP.fullmatch(text):
        return False
    try:
        datetime.fromisoformat(text.replace(" UTC", "").replace("UTC", "").replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def object_problems(name: str, data: bytes) -> list[str]:
    """One audit object: one line (an NDJSON row) that its table's schema takes."""
    schema = load(APPROVAL_AUDIT_SCHEMA if name.startswith("approvals/") else AUDIT_SCHEMA)
    lines = data.rstrip(b"\n").count(b"\n") + 1
    if lines != 1:
        return [f"{name}: {lines} lines; a NEWLINE_DELIMITED_JSON row is one"]
    return [f"{name}: {problem}" for problem in problems(json.loads(data), schema)]


def audit_problems(storage: Any, bucket: str) -> list[str]:
    """Every audit object in ``bucket`` (all of it is audit) checked by :func:`object_problems`."""
    found: list[str] = []
    for blob in storage.list_blobs(bucket):
        found += object_problems(blob.name, blob.download_as_bytes())
    return found
