"""What one apply knows while it runs: the plan, its journal and what the journal says.

Every change of progress goes through here, so the journal on disk and the state in memory
never disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fileops_daemon.contract.plan import Plan
from fileops_daemon.core.journal import Journal, JournalPhase, JournalState
from fileops_daemon.core.steps import Step
from fileops_daemon.core.store import PlanStore

__all__ = ["FailureInfo", "ProgressCallback", "RunState"]

#: Called after every step with (steps done, steps in all).
ProgressCallback = Callable[[int, int], None]

#: Why the forward pass stopped (code, message, step, operation, started, half_run); the
#: journal keeps it with the rolling_back state, and the failed result is built from it.
FailureInfo = dict[str, Any]


@dataclass
class RunState:
    """One apply of one plan, from its journal."""

    plan: Plan
    store: PlanStore
    journal: Journal
    progress: JournalState
    case_dir: str
    started: datetime
    attempt: int
    #: Reopened from a journal: steps without a durable mark may have run already.
    resumed: bool
    log: Any  # structlog's bound logger, carrying plan_id and case_name
    #: Steps that failed after starting (so may have half-run): the rollback settles them.
    half_run: list[int] = field(default_factory=list)

    @property
    def steps(self) -> list[Step]:
        return self.progress.steps

    @property
    def phase(self) -> JournalPhase:
        return self.progress.state

    def mark_done(self, index: int) -> None:
        self.journal.done(index, self.steps[index])
        self.progress.done.add(index)

    def mark_undone(self, index: int, inverse: Step) -> None:
        self.journal.undone(index, inverse)
        self.progress.undone.add(index)

    def enter(self, phase: JournalPhase, info: dict[str, Any] | None = None) -> None:
        """Record the next phase durably (with its details), then take it on."""
        if info is None:
            self.journal.set_state(phase)
        else:
            self.journal.set_state(phase, **info)
            self.progress.info = info
        self.progress.state = phase
