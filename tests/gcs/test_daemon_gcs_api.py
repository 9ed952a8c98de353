"""The daemon with ``FILEOPS_EXECUTOR=gcs-api``: plans from Pub/Sub change the bucket through the
JSON API (no mount), undo puts it back, and an approval still notices a file edited after the
simulation that was approved."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tests.daemon_support import Stack
from tests.service.test_approval import keys, moves_plan, submit, wait_status  # noqa: F401

pytest_plugins = ["tests.conftest_daemon"]

CASE = "Smith-v-Jones"


def gcs_api_stack(stack: Stack, **env: str) -> str:
    """The stack with a projects bucket in place of a folder; the bucket's name."""
    bucket = f"{stack.project}-projects"
    stack.base_env.update(FILEOPS_EXECUTOR="gcs-api", FILEOPS_PROJECTS_BUCKET=bucket, **env)
    stack.bootstrap()
    projects = stack.storage.create_bucket(bucket)
    for i in range(6):
        projects.blob(f"{CASE}/inbox/{i}.pdf").upload_from_string(f"file {i}\n")
    projects.blob(f"{CASE}/old.txt").upload_from_string("x\n")
    return bucket


def objects(stack: Stack, bucket: str) -> dict[str, str]:
    return {
        blob.name: hashlib.sha256(blob.download_as_bytes()).hexdigest()
        for blob in stack.storage.list_blobs(bucket)
        if not blob.name.endswith("/")
    }


def without_work_dirs(tree: dict[str, str]) -> dict[str, str]:
    return {name: sha for name, sha in tree.items() if "/.fileops/" not in name}


def test_plans_and_their_undo_change_the_bucket_through_the_api(stack: Stack) -> None:
    bucket = gcs_api_stack(stack)
    before = objects(stack, bucket)
    daemon = stack.start_daemon()
    assert daemon.events("daemon.ready")[0]["executor"] == "gcs-api"
    stack.publish(moves_plan("api-1", 4, delete=True))
    result = stack.results.wait_plan("api-1", 60)[-1]
    assert result["status"] == "applied", result

    after = objects(stack, bucket)
    for i in range(4):
        assert after[f"{CASE}/sorted/{i}.pdf"] == before[f"{CASE}/inbox/{i}.pdf"]
        assert f"{CASE}/inbox/{i}.pdf" not in after
    assert f"{CASE}/old.txt" not in after
    assert not list(stack.root.iterdir()), "the daemon wrote to the (unused) projects folder"

    undo = stack.cli("undo", "api-1", "--apply", "--wait", "--json")
    assert undo.returncode == 0, undo.stderr
    assert without_work_dirs(objects(stack, bucket)) == before


def test_an_approved_plan_whose_file_was_edited_meanwhile_is_refused(
    stack: Stack,
    keys: dict[str, Path],  # noqa: F811
) -> None:
    bucket = gcs_api_stack(
        stack, FILEOPS_APPROVAL_KEY_FILE=str(keys["approval"]), FILEOPS_APPROVAL_ON_TRASH="1"
    )
    stack.start_daemon()
    plan: dict[str, Any] = moves_plan("api-wait", 2, delete=True)
    submit(stack, plan)
    wait_status(stack, "api-wait", "awaiting_approval")
    stack.storage.bucket(bucket).blob(f"{CASE}/old.txt").upload_from_string("edited\n")
    before = objects(stack, bucket)
    assert stack.cli("approve", "api-wait", "--wait").returncode == 3
    refused = wait_status(stack, "api-wait", "rejected")
    assert [e["code"] for e in refused["errors"]] == ["tree_changed"]
    assert objects(stack, bucket) == before

    submit(stack, moves_plan("api-ok", 2, delete=True, folder="other"))
    wait_status(stack, "api-ok", "awaiting_approval")
    assert stack.cli("approve", "api-ok", "--wait").returncode == 0
    assert wait_status(stack, "api-ok", "applied")["status"] == "applied"
    assert f"{CASE}/other/0.pdf" in objects(stack, bucket)
