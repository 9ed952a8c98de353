"""What a move costs in GCS requests through a real gcsfuse mount, and why the production
mount's caches (an object seen is cached for a second, a missing name never) and the folder
descriptors CaseFS keeps on gcsfuse stay safe when another writer races the daemon.

Requests are counted by the proxy of ``tests/emulators/latency_proxy.py`` (no delay added)
between gcsfuse and fake-gcs-server; other writers act through the GCS API, not the mount.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fileops_daemon.contract.errors import ErrorCode
from fileops_daemon.core import folder_cache
from fileops_daemon.core.folder_cache import names_are_folders
from fileops_daemon.core.fsops import CaseFS, StepConflictError
from fileops_daemon.core.tree import Kind
from tests.emulators import harness
from tests.emulators.latency_proxy import LatencyProxy, latency_proxy
from tests.support import CASE, apply_doc, plan_doc

BUCKET = "projects"
FILES = 20
#: The target of issue 14: at most this many GCS requests per moved file, scan included.
MAX_REQUESTS_PER_MOVE = 10
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Bucket:
    endpoint: str  # fake-gcs-server itself: the other writer's way in
    proxy: LatencyProxy  # what gcsfuse talks to
    mount: Path

    def url(self, name: str) -> str:
        return f"{self.endpoint}/storage/v1/b/{BUCKET}/o/{urllib.parse.quote(name, safe='')}"

    def upload(self, name: str, data: bytes) -> None:
        query = urllib.parse.urlencode({"uploadType": "media", "name": name})
        self._call("POST", f"{self.endpoint}/upload/storage/v1/b/{BUCKET}/o?{query}", data)

    def make_link(self, name: str, target: str) -> None:
        """A symbolic link as gcsfuse stores one: an empty object naming its target."""
        self.upload(name, b"")
        body = json.dumps({"metadata": {"gcsfuse_symlink_target": target}}).encode()
        self._call("PATCH", self.url(name), body, "application/json")

    def delete(self, name: str) -> None:
        self._call("DELETE", self.url(name))

    def read(self, name: str) -> bytes:
        return self._call("GET", self.url(name) + "?alt=media")

    def objects(self, prefix: str = f"{CASE}/") -> set[str]:
        return set(harness.list_objects(self.endpoint, BUCKET, prefix))

    @staticmethod
    def _call(
        method: str, url: str, data: bytes | None = None, kind: str = "application/octet-stream"
    ) -> bytes:
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", kind)
        with _OPENER.open(request, timeout=30) as response:
            body: bytes = response.read()
        return body


@pytest.fixture
def bucket_ttl() -> int:
    return 1  # production's metadata_cache_ttl_secs; a test may widen the window


@pytest.fixture
def bucket(tmp_path: Path, bucket_ttl: int) -> Iterator[Bucket]:
    reason = harness.fuse_unavailable_reason()
    assert reason is None, f"FUSE does not work on this machine: {reason}"
    with harness.gcs_emulator(log_path=tmp_path / "fake-gcs.log") as endpoint:
        harness.create_bucket(endpoint, BUCKET)
        with (
            latency_proxy(endpoint, 0) as proxy,
            harness.gcsfuse_mount(
                proxy.endpoint,
                BUCKET,
                tmp_path / "mnt",
                metadata_cache_ttl_secs=bucket_ttl,
                log_path=tmp_path / "gcsfuse.log",
            ) as mount,
        ):
            yield Bucket(endpoint, proxy, mount)


def _names() -> list[str]:
    return [f"scan {i:03}.pdf" for i in range(FILES)]


def test_a_move_costs_at_most_ten_gcs_requests(bucket: Bucket, tmp_path: Path) -> None:
    for name in _names():
        bucket.upload(f"{CASE}/inbox/{name}", b"%PDF-1.4 " + name.encode())
    (bucket.mount / CASE / "sorted").mkdir()
    moves = [
        {"type": "move", "from": f"{CASE}/inbox/{n}", "to": f"{CASE}/sorted/{n}"} for n in _names()
    ]
    bucket.proxy.reset()
    result = apply_doc(plan_doc(moves, plan_id="count-1"), bucket.mount, tmp_path / "state")
    counts = bucket.proxy.snapshot()

    assert result["status"] == "applied", result
    assert {f"{CASE}/sorted/{n}" for n in _names()} <= bucket.objects()
    per_move = sum(counts.values()) / FILES
    assert per_move <= MAX_REQUESTS_PER_MOVE, f"{per_move:.1f} requests per move: {counts}"


def test_case_fs_keeps_folders_on_gcsfuse_only(bucket: Bucket, tmp_path: Path) -> None:
    (bucket.mount / CASE).mkdir()
    assert names_are_folders((bucket.mount / CASE).stat().st_dev)
    assert not names_are_folders(tmp_path.stat().st_dev)


@pytest.mark.parametrize("bucket_ttl", [60])  # a wide window, so the cache surely is stale
def test_a_cached_source_changed_by_another_writer_is_not_moved(bucket: Bucket) -> None:
    bucket.upload(f"{CASE}/inbox/a.pdf", b"first version")
    (bucket.mount / CASE / "sorted").mkdir()
    with CaseFS(str(bucket.mount / CASE)) as fs:
        assert fs.kind(("inbox", "a.pdf")) is Kind.FILE  # gcsfuse now caches generation 1
        bucket.upload(f"{CASE}/inbox/a.pdf", b"second version, by someone else")
        with pytest.raises(FileNotFoundError):  # generation 1 is gone: a conflict, not a move
            fs.rename(("inbox", "a.pdf"), ("sorted", "a.pdf"))
    assert bucket.read(f"{CASE}/inbox/a.pdf") == b"second version, by someone else"
    assert f"{CASE}/sorted/a.pdf" not in bucket.objects()


@pytest.mark.parametrize("bucket_ttl", [60])
def test_a_name_found_missing_is_asked_again_before_a_rename(bucket: Bucket) -> None:
    """The negative cache stays off: a destination that appeared since is never replaced."""
    bucket.upload(f"{CASE}/inbox/a.pdf", b"ours")
    (bucket.mount / CASE / "sorted").mkdir()
    with CaseFS(str(bucket.mount / CASE)) as fs:
        assert fs.kind(("sorted", "a.pdf")) is None
        bucket.upload(f"{CASE}/sorted/a.pdf", b"theirs")
        with pytest.raises(StepConflictError, match="appeared meanwhile"):
            fs.rename(("inbox", "a.pdf"), ("sorted", "a.pdf"))
    assert bucket.read(f"{CASE}/sorted/a.pdf") == b"theirs"
    assert bucket.read(f"{CASE}/inbox/a.pdf") == b"ours"


def test_a_kept_folder_swapped_for_a_link_is_never_followed(
    bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(folder_cache, "MAX_AGE_SECONDS", 60.0)  # surely still kept below
    outside = tmp_path / "outside"
    outside.mkdir()
    bucket.upload(f"{CASE}/inbox/a.pdf", b"a")
    bucket.upload(f"{CASE}/inbox/b.pdf", b"b")
    bucket.upload(f"{CASE}/sorted/", b"")
    with CaseFS(str(bucket.mount / CASE)) as fs:
        fs.rename(("inbox", "a.pdf"), ("sorted", "a.pdf"))  # keeps a descriptor of sorted/
        kept = fs.open_folder(("sorted",))
        fs.close_folder(kept)
        # Another writer empties sorted/ and puts a link to a folder outside in its place.
        bucket.delete(f"{CASE}/sorted/a.pdf")
        bucket.delete(f"{CASE}/sorted/")
        bucket.make_link(f"{CASE}/sorted", str(outside))
        assert fs.open_folder(("sorted",)) == kept  # not walked again: the link is not seen
        fs.close_folder(kept)
        fs.rename(("inbox", "b.pdf"), ("sorted", "b.pdf"))
    assert list(outside.iterdir()) == []
    assert bucket.read(f"{CASE}/sorted/b.pdf") == b"b"  # at the plan's own path, in the case


def test_a_folder_swapped_for_a_link_is_refused_a_second_later(
    bucket: Bucket, tmp_path: Path
) -> None:
    """Both the kept descriptor and the mount's cache of what exists last one second."""
    outside = tmp_path / "outside"
    outside.mkdir()
    bucket.upload(f"{CASE}/inbox/a.pdf", b"a")
    bucket.upload(f"{CASE}/inbox/b.pdf", b"b")
    bucket.upload(f"{CASE}/sorted/", b"")
    with CaseFS(str(bucket.mount / CASE)) as fs:
        fs.rename(("inbox", "a.pdf"), ("sorted", "a.pdf"))
        bucket.delete(f"{CASE}/sorted/a.pdf")
        bucket.delete(f"{CASE}/sorted/")
        bucket.make_link(f"{CASE}/sorted", str(outside))
        time.sleep(1.5)
        with pytest.raises(StepConflictError) as refused:
            fs.rename(("inbox", "b.pdf"), ("sorted", "b.pdf"))
    assert refused.value.code is ErrorCode.SYMLINK_REFUSED
    assert list(outside.iterdir()) == []
    assert bucket.read(f"{CASE}/inbox/b.pdf") == b"b"
