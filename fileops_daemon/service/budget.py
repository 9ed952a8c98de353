"""The step budget: steps applied without a decision add up, per case and per sender, over the
approval window, so that splitting a large plan into small ones does not walk around
``FILEOPS_APPROVAL_MIN_STEPS``.

One object per case (``budget/case-<sha>.json``) and per ``requested_by``
(``budget/sender-<sha>.json``) in the state bucket lists ``[plan_id, steps, at]`` for each plan
admitted without a decision within the window. Each entry is written with the generation that
was read, and once per plan (a redelivered plan is not counted twice). The case budget is the
guarantee: a case's plans are admitted one at a time under its lease. The sender's is a
courtesy limit: ``requested_by`` is whatever the agent writes, and two daemons admitting one
sender's plans of two cases at the same moment may both pass.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fileops_daemon.core.paths import nfc
from fileops_daemon.service.ledger_store import GenerationMismatchError, LedgerStore

__all__ = ["StepBudget"]


@dataclass(frozen=True)
class _Entries:
    entries: list[list[Any]]
    generation: int


class StepBudget:
    def __init__(
        self,
        store: LedgerStore,
        threshold: int,
        window_seconds: float,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.threshold = threshold
        self.window = window_seconds
        self.clock = clock

    @staticmethod
    def object_name(kind: str, key: str) -> str:
        digest = hashlib.sha256(nfc(key).encode("utf-8", "surrogatepass")).hexdigest()
        return f"budget/{kind}-{digest[:40]}.json"

    def reasons(self, plan_id: str, case_name: str, requested_by: str, steps: int) -> list[str]:
        """Why this plan's steps, added to what its case or sender applied without a decision
        within the window, need a decision; empty when they fit."""
        if not (self.threshold and self.window) or steps == 0:
            return []
        reasons = []
        for kind, key, who in self._keys(case_name, requested_by):
            spent = sum(int(e[1]) for e in self._read(kind, key).entries if e[0] != plan_id)
            if spent and spent + steps > self.threshold:
                reasons.append(
                    f"{spent + steps} file steps by {who} within {_span(self.window)} "
                    f"({steps} in this plan), more than {self.threshold}"
                )
                break  # one reason is enough (the case's, when both apply)
        return reasons

    def spend(self, plan_id: str, case_name: str, requested_by: str, steps: int) -> None:
        """Count this plan's steps (once) against its case and its sender."""
        if not (self.threshold and self.window) or steps == 0:
            return
        for kind, key, _ in self._keys(case_name, requested_by):
            self._add(kind, key, plan_id, steps)

    def _keys(self, case_name: str, requested_by: str) -> list[tuple[str, str, str]]:
        keys = [("case", nfc(case_name), "this case")]
        if requested_by:
            keys.append(("sender", requested_by, f"requested_by {requested_by!r}"))
        return keys

    def _read(self, kind: str, key: str) -> _Entries:
        found = self.store.read(self.object_name(kind, key))
        if found is None:
            return _Entries([], 0)
        try:
            document = json.loads(found.data)
            entries = [
                e
                for e in document.get("entries", [])
                if isinstance(e, list) and len(e) == 3 and float(e[2]) > self.clock() - self.window
            ]
        except (ValueError, TypeError, AttributeError):
            entries = []  # not ours: rewritten, generation-matched
        return _Entries(entries, found.generation)

    def _add(self, kind: str, key: str, plan_id: str, steps: int) -> None:
        for _ in range(5):
            current = self._read(kind, key)
            if any(e[0] == plan_id for e in current.entries):
                return
            entries = [*current.entries, [plan_id, steps, self.clock()]]
            data = json.dumps({"key": nfc(key), "entries": entries}, ensure_ascii=False)
            try:
                self.store.write(
                    self.object_name(kind, key),
                    data.encode("utf-8", "surrogatepass"),
                    content_type="application/json",
                    if_generation_match=current.generation,
                )
                return
            except GenerationMismatchError:
                continue  # another plan of this sender counted at the same moment: again
        raise GenerationMismatchError(f"the step budget of {kind} kept changing")


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
