"""A LedgerStore in memory, for tests: generations behave as GCS's do.

Every write makes a new generation (increasing across the whole store, like GCS's), and a
write's precondition is checked and the object replaced under one lock, so two ledgers that
share the store race exactly as two daemons sharing a bucket do.
"""

from __future__ import annotations

import threading

from fileops_daemon.service.ledger_store import GenerationMismatchError, Stored

__all__ = ["MemoryLedgerStore"]


class MemoryLedgerStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, Stored] = {}
        self._last_generation = 0

    def read(self, name: str) -> Stored | None:
        with self._lock:
            return self._objects.get(name)

    def write(
        self, name: str, data: bytes, *, content_type: str, if_generation_match: int | None
    ) -> int:
        with self._lock:
            current = self._objects.get(name)
            at = 0 if current is None else current.generation
            if if_generation_match is not None and if_generation_match != at:
                raise GenerationMismatchError(
                    f"{name} is at generation {at}, not {if_generation_match}"
                )
            self._last_generation += 1
            self._objects[name] = Stored(bytes(data), self._last_generation)
            return self._last_generation

    def names(self, prefix: str = "") -> list[str]:
        """The objects' names under ``prefix``, sorted (for tests to look at)."""
        with self._lock:
            return sorted(name for name in self._objects if name.startswith(prefix))
