"""What ``make run`` keeps in ``./run`` between runs, and how it decides to keep or reset it.

Layout of the run folder::

    projects/     the case folders the daemon changes (a plain folder, seeded once)
    state/        the daemon's local journals
    gcs/          fake-gcs-server's filesystem backend: the state and audit buckets
                  (ledger, leases, undo history, approvals, audit records)
    ports.json    the emulators' ports, asked for again on the next run while they are free
    approval.key  the operators' approval key (made by ``make run APPROVAL=1``), mode 0600
    env.sh        the exports another terminal needs
    daemon.log    what the daemon printed (also shown in the terminal)
    logs/         the emulators' own logs
    .lock         held while a ``make run`` uses the folder

Pub/Sub (pstest) keeps everything in memory: a restart loses messages not yet delivered; the
daemon's bootstrap makes the topics and subscriptions again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shlex
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = [
    "APPROVAL_POLICY_VARIABLES",
    "RunFolder",
    "StackBusyError",
    "StateNote",
]

#: Settings that switch the daemon's approval gate on (docs/daemon.md#approval).
APPROVAL_POLICY_VARIABLES = (
    "FILEOPS_APPROVAL_MIN_STEPS",
    "FILEOPS_APPROVAL_ON_TRASH",
    "FILEOPS_APPROVAL_CASES",
)


class StackBusyError(RuntimeError):
    """Another ``make run`` holds the run folder."""


@dataclass(frozen=True)
class StateNote:
    """Whether this run starts from the last one's state, and the line that says so."""

    kept: bool
    message: str


class RunFolder:
    """The run folder: its lock, its state, its ports and its files."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.projects = path / "projects"
        self.state = path / "state"
        self.gcs = path / "gcs"
        self.logs = path / "logs"
        self.env_file = path / "env.sh"
        self.daemon_log = path / "daemon.log"
        self.approval_key = path / "approval.key"
        self._ports = path / "ports.json"
        self._lock: IO[str] | None = None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold ``.lock`` for the whole run: two stacks on one folder would share buckets on
        disk and a projects folder, and fight over them."""
        self.path.mkdir(parents=True, exist_ok=True)
        with (self.path / ".lock").open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "?"
                raise StackBusyError(
                    f"another `make run` (pid {holder}) uses {self.path}; stop it first"
                ) from None
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def prepare(self, *, reset: bool) -> StateNote:
        """Keep what the last run left, or start afresh (and say which, and why)."""
        left = [p for p in self.path.iterdir() if p.name != ".lock"] if self.path.exists() else []
        how_to_reset = "`make run RESET=1` starts afresh"
        if reset and left:
            self._clear()
            return StateNote(False, f"state reset (RESET=1): {self.path} was emptied")
        if not left:
            return StateNote(False, f"fresh state in {self.path}")
        if not self.gcs.is_dir():
            self._clear()
            return StateNote(
                False,
                f"state reset: {self.path} came from an older `make run`, whose buckets lived "
                "in memory (its ledger and undo history were already gone)",
            )
        return StateNote(
            True,
            f"state kept from the last run in {self.path}: ledger, audit, undo history and "
            f"case folders ({how_to_reset})",
        )

    def _clear(self) -> None:
        for item in self.path.iterdir():
            if item.name == ".lock":
                continue
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item)
            else:
                item.unlink()

    def saved_ports(self) -> dict[str, int]:
        """The ports the last run used, by emulator (empty when unknown)."""
        try:
            saved = json.loads(self._ports.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(saved, dict):
            return {}
        return {str(k): v for k, v in saved.items() if isinstance(v, int) and 0 < v < 65536}

    def save_ports(self, ports: Mapping[str, int]) -> None:
        self._ports.write_text(json.dumps(dict(ports)) + "\n", encoding="utf-8")

    def ensure_approval_key(self) -> Path:
        """The operators' approval key, made once (64 hex characters, readable by you only)."""
        if not self.approval_key.exists():
            fd = os.open(self.approval_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(32) + "\n")
        return self.approval_key

    def write_env_file(self, env: Mapping[str, str], names: list[str], bin_dir: Path) -> str:
        """The exports another terminal needs for ``fileops`` to reach this stack; also in a
        file, which ``source`` reads."""
        lines = [f"export {name}={shlex.quote(env[name])}" for name in names if env.get(name)]
        lines.append(f'export PATH="{bin_dir}:$PATH"  # puts fileops on PATH')
        text = "\n".join(lines) + "\n"
        self.env_file.write_text(text, encoding="utf-8")
        return text
