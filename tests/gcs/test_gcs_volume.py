"""The GCS-API executor on fake-gcs-server: the same plans give the same results and the same
tree as on a folder, every change names the generation it acts on, and a writer racing a
step, a link or an unrepresentable name, or an outage never costs a file."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from fileops_daemon.contract.plan import parse_plan
from fileops_daemon.core.outcome import RunEnd
from fileops_daemon.core.store import PlanStore
from fileops_daemon.core.undo import build_undo_plan
from fileops_daemon.core.volume import LocalVolume
from tests.emulators.latency_proxy import LatencyProxy
from tests.gcs.support import Bucket, Tree, local_tree, seed_local
from tests.support import CASE, NO_WAIT, apply_doc, plan_doc

FILES: dict[str, bytes] = {
    f"{CASE}/inbox/intake.pdf": b"intake form",
    f"{CASE}/inbox/photo.jpg": b"\xff\xd8 photo",
    f"{CASE}/inbox/notes.txt": b"call the witness",
    f"{CASE}/old-scans/a.pdf": b"scan a",
    f"{CASE}/old-scans/b.pdf": b"scan b",
    f"{CASE}/old-scans/deep/c.pdf": b"scan c",
    f"{CASE}/drafts/letter.txt": b"draft 1",
    f"{CASE}/drafts/memo.txt": b"memo",
}
FOLDERS = (f"{CASE}/old-scans/empty", f"{CASE}/Medical Records")

OPERATIONS: list[dict[str, Any]] = [
    {"type": "mkdir", "path": f"{CASE}/Investigation/photos"},
    {"type": "move", "from": f"{CASE}/inbox/photo.jpg", "to": f"{CASE}/Investigation/photos/1.jpg"},
    {
        "type": "move",
        "from": f"{CASE}/inbox/intake.pdf",
        "to": f"{CASE}/Medical Records/intake.pdf",
    },
    {"type": "move", "from": f"{CASE}/old-scans", "to": f"{CASE}/Investigation/scans"},
    {"type": "copy", "from": f"{CASE}/inbox/notes.txt", "to": f"{CASE}/Investigation/notes.txt"},
    {"type": "delete", "path": f"{CASE}/drafts/memo.txt"},
    {"type": "write", "path": f"{CASE}/drafts/letter.txt", "content": "draft 2", "overwrite": True},
    {"type": "write", "path": f"{CASE}/Investigation/todo.txt", "content": "subpoena"},
    {"type": "move", "from": f"{CASE}/drafts", "to": f"{CASE}/Correspondence"},
]


def without_times(result: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v for k, v in result.items() if k not in ("started_at", "finished_at", "duration_ms")
    }


def folder_twin(tmp_path: Path) -> Path:
    root = tmp_path / "projects"
    seed_local(root, FILES, FOLDERS)
    return root


@pytest.mark.parametrize("parallelism", [1, 8])
def test_a_plan_and_its_undo_end_as_on_a_folder(
    bucket: Bucket, tmp_path: Path, parallelism: int
) -> None:
    bucket.seed(FILES, FOLDERS)
    root = folder_twin(tmp_path)
    before = bucket.tree()
    assert before == local_tree(root)
    document = plan_doc(OPERATIONS, plan_id="gcs-1")

    on_bucket = bucket.apply(document, parallelism=parallelism)
    on_folder = apply_doc(document, root, tmp_path / "folder-state", parallelism=parallelism)

    assert on_bucket.end is RunEnd.APPLIED, on_bucket.result["errors"]
    assert without_times(on_bucket.result) == without_times(on_folder)
    assert bucket.tree() == local_tree(root)
    assert bucket.tree() != before

    undone = bucket.undo("gcs-1", parallelism=parallelism)
    assert undone.end is RunEnd.APPLIED, undone.result["errors"]
    restored = {k: v for k, v in bucket.tree().items() if "/.fileops" not in k}
    assert restored == before


def test_a_dry_run_lists_the_same_changes_and_sends_no_change(
    bucket: Bucket, proxy: LatencyProxy, tmp_path: Path
) -> None:
    bucket.seed(FILES, FOLDERS)
    root = folder_twin(tmp_path)
    document = plan_doc(OPERATIONS, plan_id="gcs-dry", dry_run=True)
    proxy.log.clear()
    planned = bucket.apply(document)
    assert planned.end is RunEnd.PLANNED
    assert without_times(planned.result) == without_times(
        apply_doc(document, root, tmp_path / "folder-state")
    )
    assert {method for method, _ in proxy.log} == {"GET"}


def test_every_change_names_the_generation_it_acts_on(bucket: Bucket, proxy: LatencyProxy) -> None:
    bucket.seed(FILES, FOLDERS)
    proxy.log.clear()
    assert bucket.apply(plan_doc(OPERATIONS, plan_id="gcs-pre")).end is RunEnd.APPLIED
    changes = [(m, urllib.parse.urlsplit(p)) for m, p in proxy.log if m in ("POST", "DELETE")]
    assert len(changes) >= 20
    for method, url in changes:
        query = urllib.parse.parse_qs(url.query)
        where = f"{method} {url.path}"
        if method == "DELETE":
            assert "ifGenerationMatch" in query, where
        elif any(f"/{route}/" in url.path for route in ("rewriteTo", "copyTo", "moveTo")):
            assert query.get("ifGenerationMatch") == ["0"], where
            assert "ifSourceGenerationMatch" in query, where
        else:  # an upload: a new object only
            assert url.path.startswith("/upload/"), where
            assert query.get("ifGenerationMatch") == ["0"], where


def racing(proxy: LatencyProxy, method: str, route_part: str, act: Any) -> None:
    """Run ``act`` once, right before the first request of that kind reaches the bucket."""
    fired: list[bool] = []

    def before(seen_method: str, path: str) -> None:
        route = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
        if not fired and seen_method == method and route_part in route:
            fired.append(True)
            act()

    proxy.before_forward = before


@pytest.mark.parametrize("objects_move", [True, False], ids=["objects.move", "copy+delete"])
def test_a_destination_that_appears_while_a_file_is_moved_is_kept(
    bucket: Bucket, proxy: LatencyProxy, objects_move: bool
) -> None:
    proxy.serve_move = objects_move
    bucket.seed(FILES, FOLDERS)
    before = bucket.tree()
    target = f"{CASE}/Medical Records/intake.pdf"
    racing(
        proxy,
        "POST",
        f"moveTo/o/{target}" if objects_move else f"rewriteTo/b/{bucket.name}/o/{target}",
        lambda: bucket.direct.blob(target).upload_from_string(b"theirs"),
    )
    outcome = bucket.apply(plan_doc(OPERATIONS, plan_id="gcs-race-1"))

    assert outcome.end is RunEnd.ROLLED_BACK, outcome.result
    assert [e["code"] for e in outcome.result["errors"]] == ["tree_changed"]
    assert bucket.direct.blob(target).download_as_bytes() == b"theirs"
    after = {k: v for k, v in bucket.tree().items() if k != target}
    assert after == before  # everything done before the conflict was put back


def test_a_source_rewritten_while_it_is_moved_is_not_lost(
    bucket: Bucket, proxy: LatencyProxy
) -> None:
    proxy.serve_move = False  # between the copy and the delete: only copy + delete has one
    bucket.seed(FILES, FOLDERS)
    source = f"{CASE}/inbox/intake.pdf"
    racing(
        proxy,
        "DELETE",
        f"/o/{source}",
        lambda: bucket.direct.blob(source).upload_from_string(b"edited meanwhile"),
    )
    outcome = bucket.apply(plan_doc(OPERATIONS, plan_id="gcs-race-2"))

    assert outcome.end is RunEnd.ROLLED_BACK, outcome.result
    assert bucket.direct.blob(source).download_as_bytes() == b"edited meanwhile"
    tree = bucket.tree()
    assert f"{CASE}/Medical Records/intake.pdf" not in tree  # our copy was taken back
    assert tree[f"{CASE}/inbox/photo.jpg"][0] == "file"  # the earlier move was rolled back


def test_a_gcsfuse_symlink_object_is_refused(bucket: Bucket) -> None:
    bucket.seed(FILES, FOLDERS)
    link = bucket.direct.blob(f"{CASE}/inbox/link")
    link.metadata = {"gcsfuse_symlink_target": "/etc/passwd"}
    link.upload_from_string(b"")
    ops = [{"type": "move", "from": f"{CASE}/inbox/link", "to": f"{CASE}/link2"}]
    outcome = bucket.apply(plan_doc(ops, plan_id="gcs-link"))
    assert outcome.end is RunEnd.REJECTED
    assert [e["code"] for e in outcome.result["errors"]] == ["symlink_refused"]
    folder_ops = [{"type": "move", "from": f"{CASE}/inbox", "to": f"{CASE}/in2"}]
    outcome = bucket.apply(plan_doc(folder_ops, plan_id="gcs-link-2"))
    assert [e["code"] for e in outcome.result["errors"]] == ["symlink_refused"]


@pytest.mark.parametrize("odd", ["a//b.pdf", "a/./b.pdf", "a/../b.pdf"])
def test_a_folder_holding_a_name_no_filesystem_can_hold_is_not_moved(
    bucket: Bucket, odd: str
) -> None:
    bucket.seed({**FILES, f"{CASE}/odd/{odd}": b"x", f"{CASE}/odd/ok.pdf": b"y"})
    before = bucket.tree()
    ops = [{"type": "move", "from": f"{CASE}/odd", "to": f"{CASE}/moved"}]
    outcome = bucket.apply(plan_doc(ops, plan_id="gcs-odd"))
    assert outcome.end is RunEnd.REJECTED, outcome.result
    assert bucket.tree() == before


def test_cases_are_found_by_their_folder_only(bucket: Bucket) -> None:
    bucket.seed({"Lone-File": b"not a folder", f"{CASE}/a.txt": b"a"})
    ops = [{"type": "mkdir", "path": "Lone-File/x"}]
    assert (
        bucket.apply(plan_doc(ops, case="Lone-File", plan_id="c1")).result["errors"][0]["code"]
        == "case_missing"
    )
    ops = [{"type": "mkdir", "path": "Nobody/x"}]
    missing = bucket.apply(plan_doc(ops, case="Nobody", plan_id="c2"))
    assert [e["code"] for e in missing.result["errors"]] == ["case_missing"]


def test_a_bucket_outage_mid_plan_loses_nothing_and_a_rerun_finishes(
    bucket: Bucket, proxy: LatencyProxy
) -> None:
    bucket.seed(FILES, FOLDERS)
    before = bucket.tree()
    changes: list[str] = []

    def outage(method: str, path: str) -> int | None:
        if method in ("POST", "DELETE"):
            changes.append(path)
        return 503 if len(changes) > 6 else None  # the bucket fails after six changes

    proxy.answer = outage
    document = plan_doc(OPERATIONS, plan_id="gcs-outage")
    broken = bucket.apply(document)
    assert broken.end is not RunEnd.APPLIED
    files_then = {v for v in bucket.tree().values() if v[0] == "file"}
    assert {v for v in before.values() if v[0] == "file"} <= files_then  # no content lost

    proxy.answer = None
    again = bucket.apply(document)
    tree = {k: v for k, v in bucket.tree().items() if "/.fileops" not in k}
    if again.end is RunEnd.APPLIED:
        assert tree == expected_after(bucket, document)
    else:  # the outage made it roll back: the tree is the one before, as the result says
        assert again.end is RunEnd.ROLLED_BACK, again.result
        assert tree == {k: v for k, v in before.items() if "/.fileops" not in k}


def expected_after(bucket: Bucket, document: dict[str, Any]) -> Tree:
    """The tree the plan gives on a folder seeded like the bucket was."""
    root = bucket.state.parent / "reference"
    seed_local(root, FILES, FOLDERS)
    apply_doc(document, root, bucket.state.parent / "reference-state")
    return {k: v for k, v in local_tree(root).items() if "/.fileops" not in k}


def test_the_local_volume_is_the_default(tmp_path: Path) -> None:
    root = folder_twin(tmp_path)
    plan = parse_plan(plan_doc(OPERATIONS, plan_id="v1"))
    volume = LocalVolume(str(root))
    assert volume.locate_case(CASE) == str(root / CASE)
    from fileops_daemon.core.execute import apply_plan

    outcome = apply_plan(plan, str(root), str(tmp_path / "s"), volume=volume, retry=NO_WAIT)
    assert outcome.end is RunEnd.APPLIED
    stored = PlanStore(str(tmp_path / "s"), "v1").read_undo()
    undo = build_undo_plan("v1", stored, CASE, dry_run=False)
    assert apply_plan(undo, str(root), str(tmp_path / "s"), retry=NO_WAIT).end is RunEnd.APPLIED
