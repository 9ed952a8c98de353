"""A bucket on fake-gcs-server behind the test proxy, and trees to compare across volumes."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.api_core.exceptions import NotFound
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from fileops_daemon.contract.limits import Limits
from fileops_daemon.contract.plan import parse_plan
from fileops_daemon.core.execute import apply_plan
from fileops_daemon.core.outcome import ApplyOutcome
from fileops_daemon.core.store import PlanStore
from fileops_daemon.core.undo import build_undo_plan
from fileops_daemon.gcs import GcsVolume
from tests.emulators import harness
from tests.emulators.latency_proxy import LatencyProxy
from tests.support import NO_WAIT, assert_valid_result

Tree = dict[str, tuple[str, ...]]


def client(endpoint: str) -> storage.Client:
    """A client of ``endpoint`` itself (set up and inspection: never through the proxy)."""
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = endpoint
    try:
        return storage.Client(project="fileops-test", credentials=AnonymousCredentials())
    finally:
        if previous is None:
            del os.environ["STORAGE_EMULATOR_HOST"]
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous


@dataclass
class Bucket:
    """One test's bucket: seeded and read directly, changed by fileops through the proxy."""

    server: str
    proxy: LatencyProxy
    name: str
    state: Path

    @property
    def direct(self) -> storage.Bucket:
        return client(self.server).bucket(self.name)

    def volume(self) -> GcsVolume:
        return GcsVolume(self.name, lambda: client(self.proxy.endpoint))

    def seed(self, files: dict[str, bytes], folders: tuple[str, ...] = ()) -> None:
        bucket = self.direct
        for name, data in files.items():
            bucket.blob(name).upload_from_string(data)
        for folder in folders:
            bucket.blob(folder.rstrip("/") + "/").upload_from_string(b"")

    def tree(self) -> Tree:
        """Files (sha256) and folders (a placeholder, or a prefix of some object) by name."""
        entries: Tree = {}
        for blob in client(self.server).list_blobs(self.name):
            name: str = blob.name
            parts = name.rstrip("/").split("/")
            for depth in range(1, len(parts)):
                entries["/".join(parts[:depth])] = ("dir",)
            if name.endswith("/"):
                entries[name.rstrip("/")] = ("dir",)
            else:
                try:
                    data = blob.download_as_bytes()
                except NotFound:  # removed since the listing (a killed run's last request)
                    continue
                entries[name] = ("file", hashlib.sha256(data).hexdigest())
        return entries

    def settled_tree(self) -> Tree:
        """The tree once it stops changing: requests a killed process had in flight may
        still land after its death."""
        previous = self.tree()
        for _ in range(50):
            time.sleep(0.2)
            current = self.tree()
            if current == previous:
                return current
            previous = current
        raise AssertionError("the bucket kept changing")

    def apply(self, document: dict[str, Any], **kwargs: Any) -> ApplyOutcome:
        kwargs.setdefault("retry", NO_WAIT)
        plan = parse_plan(document, undo_of=kwargs.pop("undo_of", None))
        outcome = apply_plan(
            plan, f"gs://{self.name}", str(self.state), volume=self.volume(), **kwargs
        )
        assert_valid_result(outcome.result)
        return outcome

    def undo(self, plan_id: str, **kwargs: Any) -> ApplyOutcome:
        stored = PlanStore(str(self.state), plan_id).read_undo()
        assert stored is not None, f"no undo stored for {plan_id}"
        plan = build_undo_plan(plan_id, stored, stored["case_name"], dry_run=False, limits=Limits())
        kwargs.setdefault("retry", NO_WAIT)
        outcome = apply_plan(
            plan, f"gs://{self.name}", str(self.state), volume=self.volume(), **kwargs
        )
        assert_valid_result(outcome.result)
        return outcome


def new_bucket(server: str, proxy: LatencyProxy, state: Path) -> Bucket:
    name = f"b-{uuid.uuid4().hex[:12]}"
    harness.create_bucket(server, name)
    return Bucket(server, proxy, name, state)


def local_tree(root: Path) -> Tree:
    """The same view of a local folder: files (sha256) and folders, by relative path."""
    entries: Tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            entries[os.path.relpath(os.path.join(dirpath, name), root)] = ("dir",)
        for name in filenames:
            full = Path(dirpath, name)
            entries[os.path.relpath(full, root)] = (
                "file",
                hashlib.sha256(full.read_bytes()).hexdigest(),
            )
    return entries


def seed_local(root: Path, files: dict[str, bytes], folders: tuple[str, ...] = ()) -> None:
    for folder in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
