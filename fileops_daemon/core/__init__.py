"""The safe core: plan -> confine -> simulate -> apply -> undo, on a local or mounted folder.

No cloud SDK here (import-linter checks it): the daemon and the local CLI share this code.
"""

from __future__ import annotations

from fileops_daemon.core.execute import ApplyOutcome, ApplyPaused, RunEnd, apply_plan, dry_run
from fileops_daemon.core.paths import CasePath, confine
from fileops_daemon.core.simulate import Simulation, confine_plan, simulate
from fileops_daemon.core.store import PlanStore
from fileops_daemon.core.undo import build_undo_plan, inverse_plan

__all__ = [
    "ApplyOutcome",
    "ApplyPaused",
    "CasePath",
    "PlanStore",
    "RunEnd",
    "Simulation",
    "apply_plan",
    "build_undo_plan",
    "confine",
    "confine_plan",
    "dry_run",
    "inverse_plan",
    "simulate",
]
