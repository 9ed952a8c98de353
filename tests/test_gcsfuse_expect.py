"""``expect`` on a real gcsfuse mount: a file another writer replaced through the bucket (not
through the mount) after the simulation checked it is not moved or trashed by its step."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fileops_daemon.contract.plan import parse_plan
from fileops_daemon.core.execute import apply_plan
from fileops_daemon.core.outcome import RunEnd
from tests.emulators import harness
from tests.gcs.support import client
from tests.support import CASE, NO_WAIT, error_codes, plan_doc

BUCKET = "projects"
ORIGINAL = b"the scan the agent saw"
SOURCE = f"{CASE}/in/x.pdf"


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    reason = harness.fuse_unavailable_reason()
    assert reason is None, f"FUSE does not work on this machine: {reason}"
    with harness.gcs_emulator() as endpoint:
        harness.create_bucket(endpoint, BUCKET)
        bucket = client(endpoint).bucket(BUCKET)
        bucket.blob(SOURCE).upload_from_string(ORIGINAL)
        bucket.blob(f"{CASE}/out/").upload_from_string(b"")
        with harness.gcsfuse_mount(
            endpoint, BUCKET, tmp_path / "mnt", log_path=tmp_path / "gcsfuse.log"
        ) as mnt:
            yield endpoint, mnt


class ReplacedThroughTheBucket:
    """After the simulation, before the first step: another writer replaces the object, and
    the mount's one-second metadata cache runs out."""

    def __init__(self, endpoint: str, content: bytes) -> None:
        self.endpoint, self.content = endpoint, content

    def journal_created(self, header_line: bytes) -> None:
        client(self.endpoint).bucket(BUCKET).blob(SOURCE).upload_from_string(self.content)
        time.sleep(1.5)

    def journal_synced(self, summary: dict[str, Any]) -> None:
        pass


@pytest.mark.parametrize("kind", ["move", "delete"])
@pytest.mark.parametrize(
    ("expect", "edited"),
    [
        ({"size": 22, "sha256": hashlib.sha256(ORIGINAL).hexdigest()}, b"the scan someone else "),
        ({"size": 22}, ORIGINAL + b", and more"),
    ],
    ids=["same-size-other-bytes", "grew"],
)
def test_a_file_replaced_after_the_check_is_not_moved(
    mount: tuple[str, Path], tmp_path: Path, kind: str, expect: dict[str, Any], edited: bytes
) -> None:
    endpoint, mnt = mount
    if kind == "move":
        op = {"type": "move", "from": SOURCE, "to": f"{CASE}/out/x.pdf", "expect": expect}
    else:
        op = {"type": "delete", "path": SOURCE, "expect": expect}
    plan = parse_plan(plan_doc([op], plan_id=f"mount-{kind}"))
    outcome = apply_plan(
        plan,
        str(mnt),
        str(tmp_path / "state"),
        retry=NO_WAIT,
        checkpoint=ReplacedThroughTheBucket(endpoint, edited),
    )
    assert outcome.end is RunEnd.ROLLED_BACK, outcome.result
    assert error_codes(outcome.result) == ["precondition_failed"]
    names = harness.list_objects(endpoint, BUCKET, f"{CASE}/")
    assert f"{CASE}/out/x.pdf" not in names
    assert not [n for n in names if "/.fileops/" in n and not n.endswith("/")]
    assert client(endpoint).bucket(BUCKET).blob(SOURCE).download_as_bytes() == edited
