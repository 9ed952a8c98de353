"""End to end on real gcsfuse: the daemon applies plans to a mounted fake-gcs bucket, and the
tests check the bucket itself through the GCS API, not only the mount.

The mount is flat (no hierarchical namespace), with ``--enable-atomic-rename-object=false``
(fake-gcs-server has no MoveObject, so every rename is copy-then-delete: the harder case) and
``--rename-dir-limit=0`` (a folder rename fails with EMFILE: the daemon must expand it). FUSE
must work here: when it cannot, these tests fail and say why; they never skip.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_support import Stack, steps_done, wait_until
from tests.emulators import harness
from tests.support import CASE

pytest_plugins = ["tests.conftest_daemon"]

BUCKET = "projects"


class TcpGate:
    """A TCP forwarder in front of the bucket's server: ``cut()`` makes the bucket unreachable
    (connections refused, open ones dropped) without losing its data; ``mend()`` restores it
    on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target = (harness.LOOPBACK, target_port)
        self.port = harness.free_port()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.mend()

    def mend(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((harness.LOOPBACK, self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        if self._listener is not None:
            # shutdown wakes the thread blocked in accept(); close alone would leave the port
            # bound until that call returned.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def bucket_server(log_path: Path) -> Iterator[tuple[str, TcpGate]]:
    """fake-gcs-server (in memory) reached through a TcpGate; yields the gate's endpoint."""
    binary = harness.ensure_binary(harness.FAKE_GCS_SERVER, "emulators")
    port = harness.free_port()
    gate = TcpGate(port)
    endpoint = f"http://{harness.LOOPBACK}:{gate.port}"
    command = harness.fake_gcs_command(binary, port)
    # Object reads come as GET /BUCKET/OBJECT with the Host the client used: the gate's.
    command[command.index("-public-host") + 1] = f"{harness.LOOPBACK}:{gate.port}"
    command[command.index("-external-url") + 1] = endpoint
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        wait_until(lambda: _healthy(endpoint), 15, "fake-gcs-server behind the gate")
        yield endpoint, gate
    finally:
        gate.cut()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _healthy(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/_internal/healthcheck", timeout=2):
            return True
    except OSError:
        return False


@dataclass
class Mounted:
    stack: Stack
    endpoint: str
    gate: TcpGate
    mount: Path

    @property
    def case(self) -> Path:
        return self.mount / CASE

    def objects(self) -> list[str]:
        return sorted(harness.list_objects(self.endpoint, BUCKET))

    def files(self, prefix: str = CASE + "/") -> dict[str, str]:
        """Every file object under ``prefix`` -> sha256 of its bytes, read through the API."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(
            project="fuse",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.endpoint},
        )
        bucket = client.bucket(BUCKET)
        return {
            blob.name: hashlib.sha256(blob.download_as_bytes()).hexdigest()
            for blob in client.list_blobs(bucket, prefix=prefix)
            if not blob.name.endswith("/")
        }

    def daemon(self, name: str, **env: str) -> Any:
        return self.stack.start_daemon(name, FILEOPS_PROJECTS_ROOT=str(self.mount), **env)


@pytest.fixture
def mounted(stack: Stack, tmp_path: Path) -> Iterator[Mounted]:
    reason = harness.fuse_unavailable_reason()
    assert reason is None, f"FUSE does not work on this machine: {reason}"
    mount = tmp_path / "mnt"
    mount.mkdir()
    with bucket_server(tmp_path / "projects-gcs.log") as (endpoint, gate):
        harness.create_bucket(endpoint, BUCKET)
        # Give up on an unreachable bucket after a few tries (EIO), not after minutes.
        flags = ["--max-retry-attempts=3", "--max-retry-sleep=1s"]
        with harness.gcsfuse_mount(
            endpoint, BUCKET, mount, flags, log_path=tmp_path / "gcsfuse.log"
        ):
            stack.bootstrap()
            yield Mounted(stack, endpoint, gate, mount)
            for daemon in stack.daemons:  # nothing may hold the mount when it goes
                daemon.stop()


def write_files(folder: Path, count: int, subfolders: int = 0) -> dict[str, bytes]:
    """``count`` small files (some in subfolders) written through the mount, in parallel."""
    contents: dict[str, bytes] = {}
    for i in range(count):
        sub = f"sub{i % subfolders}/" if subfolders else ""
        contents[f"{sub}doc{i:04}.txt"] = f"document {i} of {folder.name}\n".encode() * (i % 5 + 1)
    for rel in {Path(rel).parent for rel in contents}:
        (folder / rel).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda item: (folder / item[0]).write_bytes(item[1]), contents.items()))
    return contents


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_every_operation_lands_in_the_bucket(mounted: Mounted) -> None:
    case = mounted.case
    (case / "Medical Records").mkdir(parents=True)
    inbox = write_files(case / "uncategorized", 3)
    old = write_files(case / "old-scans", 12, subfolders=3)
    mounted.daemon("a")
    ops = [
        {"type": "mkdir", "path": f"{CASE}/Investigation/photos"},
        {
            "type": "move",
            "from": f"{CASE}/uncategorized/doc0000.txt",
            "to": f"{CASE}/Medical Records/intake.txt",
        },
        {"type": "move", "from": f"{CASE}/old-scans", "to": f"{CASE}/Investigation/scans"},
        {
            "type": "copy",
            "from": f"{CASE}/uncategorized/doc0001.txt",
            "to": f"{CASE}/Investigation/copy.txt",
        },
        {"type": "delete", "path": f"{CASE}/uncategorized/doc0002.txt"},
        {"type": "write", "path": f"{CASE}/Investigation/notes.txt", "content": "call witness"},
    ]
    plan = {"plan_id": "fuse-1", "case_name": CASE, "dry_run": False, "operations": ops}
    mounted.stack.publish(plan)
    result = mounted.stack.results.wait_plan("fuse-1", 120)[-1]
    assert result["status"] == "applied", result

    expected = {
        f"{CASE}/Medical Records/intake.txt": sha(inbox["doc0000.txt"]),
        f"{CASE}/uncategorized/doc0001.txt": sha(inbox["doc0001.txt"]),
        f"{CASE}/Investigation/copy.txt": sha(inbox["doc0001.txt"]),
        f"{CASE}/Investigation/notes.txt": sha(b"call witness"),
        f"{CASE}/.fileops/fuse-1/trash/4/uncategorized/doc0002.txt": sha(inbox["doc0002.txt"]),
    }
    expected.update({f"{CASE}/Investigation/scans/{rel}": sha(data) for rel, data in old.items()})
    assert mounted.files() == expected
    names = mounted.objects()
    assert f"{CASE}/Investigation/photos/" in names
    assert not [n for n in names if n.startswith(f"{CASE}/old-scans")], "the old folder remains"
    assert not [n for n in names if "/staging/" in n], "staging files were left behind"


def test_kill9_during_a_large_folder_move_then_restart(mounted: Mounted) -> None:
    case = mounted.case
    contents = write_files(case / "inbox", 400, subfolders=4)
    before = mounted.files()
    plan = {
        "plan_id": "fuse-big",
        "case_name": CASE,
        "dry_run": False,
        "operations": [{"type": "move", "from": f"{CASE}/inbox", "to": f"{CASE}/sorted"}],
    }
    # Paced to ~10 s so the kill lands mid-move; B runs uncapped.
    a = mounted.daemon("a", FILEOPS_APPLY_PARALLELISM="4", FILEOPS_APPLY_MAX_STEPS_PER_SECOND="40")
    mounted.stack.publish(plan)

    def moved_some() -> bool:
        record = mounted.stack.ledger_record("fuse-big")
        return bool(record) and steps_done(record.get("progress")) >= 60

    wait_until(moved_some, 120, "the folder move to get going")
    a.kill()
    midway = mounted.files()
    # Copy-then-delete renames: a kill may leave one file under both names, never none.
    assert set(Counter(midway.values()).values()) <= {1, 2}
    assert not Counter(before.values()) - Counter(midway.values()), "a file went missing"

    b = mounted.daemon("b", FILEOPS_APPLY_PARALLELISM="4")
    b.wait_for("lease.takeover", 60, plan_id="fuse-big")
    result = mounted.stack.results.wait_plan("fuse-big", 180)[-1]
    assert result["status"] == "applied", result
    expected = {f"{CASE}/sorted/{rel}": sha(data) for rel, data in contents.items()}
    assert mounted.files() == expected
    assert not [n for n in mounted.objects() if n.startswith(f"{CASE}/inbox")]


def test_bucket_unreachable_mid_apply_rolls_back_and_loses_nothing(mounted: Mounted) -> None:
    """The bucket is cut off mid-apply for longer than the step retries last: the step fails,
    the rollback cannot run either (the plan is nacked and the rollback retried), and once the
    bucket is back the plan ends failed with the tree exactly as before."""
    case = mounted.case
    write_files(case / "inbox", 300)
    before = mounted.files()
    plan = {
        "plan_id": "fuse-eio",
        "case_name": CASE,
        "dry_run": False,
        "operations": [{"type": "move", "from": f"{CASE}/inbox", "to": f"{CASE}/sorted"}],
    }
    daemon = mounted.daemon(
        "a",
        FILEOPS_APPLY_PARALLELISM="2",
        FILEOPS_RETRY_ATTEMPTS="2",
        FILEOPS_MAX_DELIVERY_ATTEMPTS="100",
        FILEOPS_APPLY_MAX_STEPS_PER_SECOND="30",  # ~10 s: the cut lands mid-move
    )
    mounted.stack.publish(plan)

    def moved_some() -> bool:
        return len(harness.list_objects(mounted.endpoint, BUCKET, f"{CASE}/sorted/")) >= 20

    wait_until(moved_some, 120, "the folder move to get going")
    mounted.gate.cut()  # gcsfuse now answers ECONNREFUSED
    daemon.wait_for("apply.step_failed", 60, plan_id="fuse-eio")
    time.sleep(3)
    mounted.gate.mend()
    result = mounted.stack.results.wait_plan("fuse-eio", 240)[-1]
    assert result["status"] == "failed", result
    assert result["errors"][0]["code"] == "io_error", result
    assert "remaining" not in result, result
    assert daemon.events("apply.rollback_incomplete"), "the rollback never met the outage"
    assert mounted.files() == before, "nothing may be lost, doubled or left moved"


def test_a_folder_that_exists_only_through_its_objects_moves_and_undoes(
    mounted: Mounted,
) -> None:
    """Objects uploaded without 'dir/' placeholders (the usual case): the folder vanishes when
    its last file moves out, and neither the move nor its undo may trip over that."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="fuse",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": mounted.endpoint},
    )
    bucket = client.bucket(BUCKET)
    uploaded = {"implicit/a.txt": b"a\n", "implicit/sub/b.txt": b"b\n", "keep.txt": b"k\n"}
    for rel, data in uploaded.items():
        bucket.blob(f"{CASE}/{rel}").upload_from_string(data)
    before = mounted.files()
    mounted.daemon("a")
    ops = [{"type": "move", "from": f"{CASE}/implicit", "to": f"{CASE}/moved"}]
    mounted.stack.publish(
        {"plan_id": "fuse-imp", "case_name": CASE, "dry_run": False, "operations": ops}
    )
    result = mounted.stack.results.wait_plan("fuse-imp", 120)[-1]
    assert result["status"] == "applied", result
    assert mounted.files() == {
        f"{CASE}/moved/a.txt": sha(b"a\n"),
        f"{CASE}/moved/sub/b.txt": sha(b"b\n"),
        f"{CASE}/keep.txt": sha(b"k\n"),
    }
    record = mounted.stack.ledger_record("fuse-imp")
    assert record is not None and record["undo"] is not None
    from fileops_daemon.core.undo import undo_request_document

    undo = undo_request_document("fuse-imp", CASE, dry_run=False)
    mounted.stack.publish(undo)
    undone = mounted.stack.results.wait_plan(undo["plan_id"], 120)[-1]
    assert undone["status"] == "applied", undone
    assert mounted.files() == before
