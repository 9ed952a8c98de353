"""Black box against Google's storage testbench: ``fileops plan``, ``apply`` and ``undo
--gcs-bucket`` as a user runs them, on the server Google's client libraries run their
conformance tests against. CI cannot download the testbench: these run only with
``FILEOPS_STORAGE_TESTBENCH=http://HOST:PORT`` naming a local one (docs/daemon.md).

The testbench answers ``objects.move`` by a copy, then a delete of the source that applies the
request's ``ifGenerationMatch`` to the source: a move with ``ifGenerationMatch=0`` copies and
then answers 412. So these run with ``FILEOPS_GCS_OBJECTS_MOVE=off`` (copy + delete);
``objects.move`` itself is checked against the proxy (``test_emulator_preconditions.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.gcs.support import client
from tests.support import CASE, plan_doc

TESTBENCH = os.environ.get("FILEOPS_STORAGE_TESTBENCH", "")
pytestmark = pytest.mark.skipif(
    not TESTBENCH, reason="set FILEOPS_STORAGE_TESTBENCH to a local storage-testbench"
)

FILES = {
    f"{CASE}/inbox/a.pdf": b"scan a",
    f"{CASE}/inbox/b.pdf": b"scan b",
    f"{CASE}/inbox/deep/c.pdf": b"scan c",
    f"{CASE}/drafts/memo.txt": b"memo",
}


def fileops(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "STORAGE_EMULATOR_HOST": TESTBENCH,
        "FILEOPS_GCS_OBJECTS_MOVE": "off",
        "FILEOPS_STATE_DIR": str(state),
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "fileops"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def objects(bucket: str) -> dict[str, str]:
    found = {}
    for blob in client(TESTBENCH).list_blobs(bucket):
        if not blob.name.endswith("/") and "/.fileops/" not in blob.name:
            found[blob.name] = hashlib.sha256(blob.download_as_bytes()).hexdigest()
    return found


@pytest.fixture
def bench_bucket() -> str:
    name = f"fileops-{uuid.uuid4().hex[:12]}"
    bucket = client(TESTBENCH).create_bucket(name)
    for path, data in FILES.items():
        bucket.blob(path).upload_from_string(data)
    return name


def write_plan(tmp_path: Path, document: dict[str, Any]) -> str:
    path = tmp_path / f"{document['plan_id']}.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


def test_plan_apply_undo_on_the_testbench(bench_bucket: str, tmp_path: Path) -> None:
    before = objects(bench_bucket)
    ops = [
        {"type": "mkdir", "path": f"{CASE}/sorted"},
        {"type": "move", "from": f"{CASE}/inbox", "to": f"{CASE}/sorted/inbox"},
        {"type": "delete", "path": f"{CASE}/drafts/memo.txt"},
    ]
    document = plan_doc(ops, plan_id="tb-1")
    plan = write_plan(tmp_path, document)
    state = tmp_path / "state"

    planned = fileops("plan", plan, "--gcs-bucket", bench_bucket, "--json", state=state)
    assert planned.returncode == 0, planned.stderr
    assert objects(bench_bucket) == before

    applied = fileops("apply", plan, "--gcs-bucket", bench_bucket, "--json", state=state)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    after = objects(bench_bucket)
    assert f"{CASE}/sorted/inbox/deep/c.pdf" in after
    assert not any(name.startswith(f"{CASE}/inbox/") for name in after)

    undone = fileops("undo", "tb-1", "--apply", "--gcs-bucket", bench_bucket, state=state)
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert objects(bench_bucket) == before


def test_expect_is_enforced_on_the_testbench(bench_bucket: str, tmp_path: Path) -> None:
    source = f"{CASE}/inbox/a.pdf"
    ops = [
        {
            "type": "move",
            "from": source,
            "to": f"{CASE}/a.pdf",
            "expect": {"size": 6, "sha256": hashlib.sha256(b"scan a").hexdigest()},
        }
    ]
    stale = write_plan(tmp_path, plan_doc(ops, plan_id="tb-2"))
    client(TESTBENCH).bucket(bench_bucket).blob(source).upload_from_string(b"scan A")
    refused = fileops("apply", stale, "--gcs-bucket", bench_bucket, "--json", state=tmp_path)
    assert refused.returncode != 0
    assert "precondition_failed" in refused.stdout
    assert objects(bench_bucket)[source] == hashlib.sha256(b"scan A").hexdigest()
