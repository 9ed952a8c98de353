"""Local state of applied plans: journal, result and inverse plan, under one state folder.

Layout: ``<state_dir>/plans/<plan_id>/{journal.jsonl,result.json,undo.json,lock}`` and
``<state_dir>/cases/<sha256 of case>.lock``. Locks are ``flock``s: they vanish with the process.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from fileops_daemon.contract.errors import ErrorCode, PlanError

__all__ = [
    "PlanStore",
    "StateFolderError",
    "case_lock",
    "create_exclusive",
    "ensure_folder",
    "write_json_atomic",
]


#: State files are opened without following a link in their last component: a link planted
#: in the state folder must not redirect a write (folders are checked by ``ensure_folder``).
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def create_exclusive(path: str, mode: int = 0o600) -> int:
    """A new file at ``path`` for writing: whatever stood there (a leftover of ours, or a
    planted link, hard link or FIFO) is removed first, then the name is created afresh."""
    with suppress(FileNotFoundError):
        os.unlink(path)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode)


def ensure_folder(path: str) -> None:
    """``os.makedirs`` that refuses a symbolic link (or a non-folder) at ``path``."""
    os.makedirs(path, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise StateFolderError(f"{path} is not a folder (a symbolic link?); refused")


class StateFolderError(OSError):
    """The state folder holds something we did not put there; nothing is written."""


def write_json_atomic(path: str, document: Any) -> bytes:
    """Write ``document`` as compact UTF-8 JSON, whole or not at all; returns the bytes."""
    tmp = f"{path}.tmp"
    # dumps, then one write: json.dump to a file encodes chunk by chunk, several times slower.
    data = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    fd = create_exclusive(tmp)
    with open(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return data


def _read_json(path: str) -> Any | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW)
    except FileNotFoundError:
        return None
    with open(fd, encoding="utf-8") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StateFolderError(f"{path} is not a plain file; refused")
        return json.load(handle)


@contextmanager
def _flock(path: str, busy_message: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | _NOFOLLOW, 0o600)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StateFolderError(f"{path} is not a plain file; refused")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PlanError(ErrorCode.PLAN_BUSY, busy_message) from None
        yield
    finally:
        os.close(fd)


@contextmanager
def case_lock(state_dir: str, case_name: str) -> Iterator[None]:
    """One apply per case at a time on this machine."""
    folder = os.path.join(state_dir, "cases")
    ensure_folder(state_dir)
    ensure_folder(folder)
    name = hashlib.sha256(case_name.encode("utf-8")).hexdigest()[:32]
    with _flock(os.path.join(folder, f"{name}.lock"), f"another plan is changing {case_name!r}"):
        yield


class PlanStore:
    def __init__(self, state_dir: str, plan_id: str) -> None:
        self.folder = os.path.join(state_dir, "plans", plan_id)
        self.plan_id = plan_id
        self.journal_path = os.path.join(self.folder, "journal.jsonl")
        self.result_path = os.path.join(self.folder, "result.json")
        self.undo_path = os.path.join(self.folder, "undo.json")
        self.epoch_path = os.path.join(self.folder, "epoch.json")

    def ensure(self) -> None:
        """Make the plan's folder; refuse links planted on the way below the state folder."""
        state_dir = os.path.dirname(os.path.dirname(self.folder))
        for folder in (state_dir, os.path.dirname(self.folder), self.folder):
            ensure_folder(folder)

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.ensure()
        lock = os.path.join(self.folder, "lock")
        with _flock(lock, f"plan {self.plan_id!r} is being applied by another process"):
            yield

    def has_journal(self) -> bool:
        return os.path.exists(self.journal_path)

    def read_result(self) -> dict[str, Any] | None:
        result: dict[str, Any] | None = _read_json(self.result_path)
        return result

    def write_result(self, result: dict[str, Any]) -> bytes:
        """Store the final result; returns it as written (compact UTF-8 JSON)."""
        return write_json_atomic(self.result_path, result)

    def read_undo(self) -> dict[str, Any] | None:
        undo: dict[str, Any] | None = _read_json(self.undo_path)
        return undo

    def write_undo(self, plan: dict[str, Any]) -> None:
        write_json_atomic(self.undo_path, plan)

    def read_epoch(self) -> int | None:
        """Which claim of the plan (the ledger's attempt count) last ran this journal."""
        epoch = _read_json(self.epoch_path)
        return epoch if type(epoch) is int else None

    def write_epoch(self, epoch: int) -> None:
        self.ensure()
        write_json_atomic(self.epoch_path, epoch)
