"""fileops-daemon: applies AI agents' file-operation plans safely to a projects folder.

The package has five layers, each importing only the ones below it (``make lint`` checks it):

    cli       the ``fileops`` command
    service   the daemon (Pub/Sub, the GCS ledger, metrics)   client   the agent side and tools
    core      plan -> confine -> simulate -> apply -> undo (no cloud SDK)
    contract  what crosses a process boundary: plans, results, error codes, attributes

The names below are the stable API. They load on first use, so ``import fileops_daemon`` (and
the local CLI) does not pay for the Pub/Sub client.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ErrorCode": "fileops_daemon.contract",
    "Limits": "fileops_daemon.contract",
    "Plan": "fileops_daemon.contract",
    "PlanError": "fileops_daemon.contract",
    "parse_plan": "fileops_daemon.contract",
    "apply_plan": "fileops_daemon.core",
    "dry_run": "fileops_daemon.core",
    "simulate": "fileops_daemon.core",
    "ClientConfig": "fileops_daemon.client",
    "FileOpsTools": "fileops_daemon.client",
    "file_ops_tools": "fileops_daemon.client",
    "FileopsClient": "fileops_daemon.client",
    "apply_reorg_plan": "fileops_daemon.client",
    "langchain_tool": "fileops_daemon.client",
    "submit_file_ops_plan": "fileops_daemon.client",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fileops_daemon' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
