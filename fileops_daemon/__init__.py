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
import sys
from typing import Any

__version__ = "0.1.0"


def _import_structlog_without_rich() -> None:
    """structlog imports rich, when it is installed, for pretty tracebacks fileops never
    prints (its renderers are plain text and JSON): ~150 ms of every command's start and a
    few MiB of the daemon. Import structlog first, here, with rich hidden; rich itself stays
    importable for the CLI's human views. A process that loaded either already is left as is.
    """
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # `import rich` raises ImportError
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]


_import_structlog_without_rich()

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
