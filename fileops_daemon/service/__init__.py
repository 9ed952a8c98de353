"""The daemon: pull plans from Pub/Sub, claim them in the GCS ledger, apply them with the core,
then audit and answer. ``fileops run`` starts it."""

from __future__ import annotations

from fileops_daemon.service.config import Config
from fileops_daemon.service.consumer import Consumer
from fileops_daemon.service.daemon import bootstrap_command, run_daemon
from fileops_daemon.service.handler import Disposition, PlanHandler, Reason, Verdict
from fileops_daemon.service.ledger import Ledger
from fileops_daemon.service.wiring import build_consumer

__all__ = [
    "Config",
    "Consumer",
    "Disposition",
    "Ledger",
    "PlanHandler",
    "Reason",
    "Verdict",
    "bootstrap_command",
    "build_consumer",
    "run_daemon",
]
