"""The daemon: pull plans from Pub/Sub, claim them in the GCS ledger, apply them with the core,
then audit and answer. ``fileops run`` starts it.

The names below load on first use, so importing one service module (the CLI's approval
commands read ``service.ledger``) does not load all of them and every cloud client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fileops_daemon.service.config import Config
    from fileops_daemon.service.consumer import Consumer
    from fileops_daemon.service.daemon import bootstrap_command, run_daemon
    from fileops_daemon.service.handler import Disposition, PlanHandler, Reason, Verdict
    from fileops_daemon.service.ledger import Ledger
    from fileops_daemon.service.wiring import build_consumer

_EXPORTS = {
    "Config": "fileops_daemon.service.config",
    "Consumer": "fileops_daemon.service.consumer",
    "bootstrap_command": "fileops_daemon.service.daemon",
    "run_daemon": "fileops_daemon.service.daemon",
    "Disposition": "fileops_daemon.service.handler",
    "PlanHandler": "fileops_daemon.service.handler",
    "Reason": "fileops_daemon.service.handler",
    "Verdict": "fileops_daemon.service.handler",
    "Ledger": "fileops_daemon.service.ledger",
    "build_consumer": "fileops_daemon.service.wiring",
}

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fileops_daemon.service' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
