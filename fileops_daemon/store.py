"""Local state of applied plans: journal, result and inverse plan, under one state folder.

Layout: ``<state_dir>/plans/<plan_id>/{journal.jsonl,result.json,undo.json,lock}`` and
``<state_dir>/cases/<sha256 of case>.lock``. Locks are ``flock``s: they vanish with the process.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fileops_daemon.errors import ErrorCode, PlanError

__all__ = ["PlanStore", "case_lock", "write_json_atomic"]


def write_json_atomic(path: str, document: Any) -> None:
    tmp = f"{path}.tmp"
    # dumps, then one write: json.dump to a file encodes chunk by chunk, several times slower.
    data = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _read_json(path: str) -> Any | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


@contextmanager
def _flock(path: str, busy_message: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
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
    os.makedirs(folder, exist_ok=True)
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

    @contextmanager
    def locked(self) -> Iterator[None]:
        os.makedirs(self.folder, exist_ok=True)
        lock = os.path.join(self.folder, "lock")
        with _flock(lock, f"plan {self.plan_id!r} is being applied by another process"):
            yield

    def has_journal(self) -> bool:
        return os.path.exists(self.journal_path)

    def read_result(self) -> dict[str, Any] | None:
        result: dict[str, Any] | None = _read_json(self.result_path)
        return result

    def write_result(self, result: dict[str, Any]) -> None:
        write_json_atomic(self.result_path, result)

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
        os.makedirs(self.folder, exist_ok=True)
        write_json_atomic(self.epoch_path, epoch)
