"""The audit records are rows of the BigQuery tables in ``schemas/*.bigquery.json``.

Here: the schemas are valid BigQuery schemas that follow the result contract; the validator
(``tests/bigquery_schema.py``) refuses what BigQuery refuses; and ``AuditLog`` writes, to
fake-gcs-server, one-line records that fit for an applied plan, a rejected one, a message that
is not even JSON (with hostile attributes) and a result too large to publish whole. Every
audit record the daemon tests write is checked too (``tests/conftest_daemon.py``), approvals
and their decisions included.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.contract.plan import parse_plan
from fileops_daemon.contract.results import bounded, now, refusal_result
from fileops_daemon.core.execute import dry_run
from fileops_daemon.service.cloud import CloudRetry
from fileops_daemon.service.delivery import Delivery
from fileops_daemon.service.outputs import AuditLog
from tests.bigquery_schema import (
    APPROVAL_AUDIT_SCHEMA,
    AUDIT_SCHEMA,
    SCHEMAS,
    audit_problems,
    load,
    object_problems,
    problems,
    schema_problems,
)
from tests.emulators import harness

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "examples" / "seed-plan.json"


def columns(fields: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {field["name"]: field for field in fields}


def test_the_result_record_follows_the_result_contract() -> None:
    """A field added to result.schema.json must be added to the BigQuery schema too."""
    contract = json.loads((SCHEMAS / "result.schema.json").read_text())
    audit = columns(load(AUDIT_SCHEMA))
    result = columns(audit["result"]["fields"])
    assert set(result) == set(contract["properties"])
    assert {name for name, field in result.items() if field["mode"] == "REQUIRED"} == set(
        contract["required"]
    ) - {"operations", "changes", "errors"}  # REPEATED: BigQuery has no required list
    for name in ("operations", "changes", "errors"):
        items = contract["properties"][name]["items"]
        assert set(columns(result[name]["fields"])) == set(items["properties"])
    assert audit["full_result"]["fields"] == audit["result"]["fields"]
    assert load(APPROVAL_AUDIT_SCHEMA)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"a": "x", "n": 1, "r": {"t": "2024-07-13T10:00:00.123Z"}}, []),
        ({"a": "x", "n": None, "r": None, "l": []}, []),
        ({"a": "x", "surprise": 1}, ["surprise: no such column"]),
        ({"n": 1}, ["a: REQUIRED, but missing"]),
        ({"a": None}, ["a: REQUIRED, but null"]),
        ({"a": 1}, ["a: 1 is not a STRING"]),
        ({"a": "x", "n": True}, ["n: true is not a INTEGER"]),
        ({"a": "x", "n": 2**60}, [f"n: {2**60} is not a INTEGER"]),
        ({"a": "x", "l": None}, ["l: REPEATED needs a list, not null"]),
        ({"a": "x", "l": ["y", None]}, ["l[1]: null in a REPEATED column"]),
        ({"a": "x", "r": {"t": "13/07/2024"}}, ['r.t: "13/07/2024" is not a TIMESTAMP']),
        ({"a": "x", "r": {"t": "2024-07-13T10:00:00+00:00", "x": 1}}, ["r.x: no such column"]),
        ({"a": "x", "b": "not base64!"}, ['b: "not base64!" is not a BYTES']),
        ({"a": "x", "j": {"any": ["thing", None]}}, []),
    ],
)
def test_the_validator_refuses_what_bigquery_refuses(
    record: dict[str, Any], expected: list[str]
) -> None:
    fields = [
        {"name": "a", "type": "STRING", "mode": "REQUIRED"},
        {"name": "n", "type": "INTEGER", "mode": "NULLABLE"},
        {"name": "l", "type": "STRING", "mode": "REPEATED"},
        {"name": "b", "type": "BYTES"},
        {"name": "j", "type": "JSON"},
        {"name": "r", "type": "RECORD", "fields": [{"name": "t", "type": "TIMESTAMP"}]},
    ]
    assert schema_problems(fields) == []
    assert problems(record, fields) == expected


def test_the_validator_refuses_a_schema_bigquery_refuses() -> None:
    bad = [
        {"name": "Plan", "type": "STRING"},
        {"name": "plan", "type": "STRING"},
        {"name": "from-path", "type": "STRING"},
        {"name": "r", "type": "RECORD"},
        {"name": "n", "type": "NUMBER", "mode": "OPTIONAL"},
    ]
    assert schema_problems(bad) == [
        "plan: twice (column names ignore case)",
        "'from-path': not a column name",
        "r: fields only and always on a RECORD",
        "n: type 'NUMBER'",
        "n: mode 'OPTIONAL'",
    ]


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    logs = tmp_path_factory.mktemp("fake-gcs")
    with harness.gcs_emulator(log_path=logs / "fake-gcs.log") as endpoint:
        client = storage.Client(
            project="audit-rows",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": endpoint},
        )
        yield client.create_bucket("audit-rows")


def delivery(data: bytes, message_id: str, **attributes: str) -> Delivery:
    return Delivery(
        data=data,
        attributes=attributes,
        message_id=message_id,
        delivery_attempt=2,
        publish_time=datetime(2024, 7, 13, 10, 0, tzinfo=UTC),
    )


def test_every_kind_of_audit_record_is_one_bigquery_row(bucket: Any, tmp_path: Path) -> None:
    data = SEED.read_bytes()
    plan = parse_plan(json.loads(data))
    case = tmp_path / plan.case_name
    (case / "uncategorized").mkdir(parents=True)
    (case / "uncategorized" / "file1.pdf").write_text("one\n")
    (case / "Medical Records").mkdir()
    planned = dry_run(plan, str(tmp_path)).result
    assert planned["status"] == "planned" and planned["changes"]
    conflict = dry_run(plan, str(tmp_path / "elsewhere")).result  # the case is missing
    assert conflict["status"] == "rejected" and conflict["operations"]
    garbage = b"\xff\xfe not json \x00"
    unparsed = refusal_result(None, PlanError(ErrorCode.INVALID_JSON, "not JSON"), now())
    unparsed["plan_id"] = "unidentified-m-3"
    large = bounded(planned, full_result="gs://audit-rows/x.json", limit=800)
    assert "truncated" in large

    log = AuditLog(bucket, CloudRetry(3, 0.05, 0.2))
    names = [
        log.write(planned, delivery(data, "m-1", plan_id=plan.plan_id)),
        log.write(conflict, delivery(data, "m-2", plan_id=plan.plan_id)),
        # Attributes are whatever the sender chose: any names, any text.
        log.write(unparsed, delivery(garbage, "m-3", **{"weird name!": "1", "": "\n"})),
        log.write(large, delivery(data, "m-4"), full=planned),
    ]
    assert audit_problems(bucket.client, bucket.name) == []
    rows = {name: json.loads(bucket.blob(name).download_as_bytes()) for name in names}
    assert rows[names[0]]["plan"]["plan_id"] == plan.plan_id
    assert base64.b64decode(rows[names[2]]["message"]["data_base64"]) == garbage
    assert rows[names[3]]["full_result"]["changes"] == planned["changes"]


def test_an_indented_record_is_refused_as_many_rows() -> None:
    """What the daemon wrote before 0.1.0's audit change: indented, so not NDJSON."""
    indented = json.dumps({"plan_id": "p"}, indent=1).encode()
    assert object_problems("approvals/2024/07/13/p.json", indented) == [
        "approvals/2024/07/13/p.json: 3 lines; a NEWLINE_DELIMITED_JSON row is one"
    ]
