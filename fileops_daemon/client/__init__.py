"""The agent side: publish plans, wait for their results, and the tools LLM agents call.

The names load on first use (as the package root's do): the local CLI imports
``client.render`` and must not pay for the Pub/Sub client on every ``fileops apply``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fileops_daemon.client.api import (
        ClientConfig,
        FileopsClient,
        close_default_client,
        default_client,
        result_of,
    )
    from fileops_daemon.client.infra import InfraProblem, classify
    from fileops_daemon.client.toolbox import FileOpsTools
    from fileops_daemon.client.toolkit import file_ops_tools
    from fileops_daemon.client.tools import (
        TOOL_DESCRIPTION,
        apply_reorg_plan,
        langchain_tool,
        submit_file_ops_plan,
    )

_EXPORTS = {
    "ClientConfig": "fileops_daemon.client.api",
    "FileopsClient": "fileops_daemon.client.api",
    "close_default_client": "fileops_daemon.client.api",
    "default_client": "fileops_daemon.client.api",
    "result_of": "fileops_daemon.client.api",
    "InfraProblem": "fileops_daemon.client.infra",
    "classify": "fileops_daemon.client.infra",
    "FileOpsTools": "fileops_daemon.client.toolbox",
    "file_ops_tools": "fileops_daemon.client.toolkit",
    "TOOL_DESCRIPTION": "fileops_daemon.client.tools",
    "apply_reorg_plan": "fileops_daemon.client.tools",
    "langchain_tool": "fileops_daemon.client.tools",
    "submit_file_ops_plan": "fileops_daemon.client.tools",
}

__all__ = [
    "TOOL_DESCRIPTION",
    "ClientConfig",
    "FileOpsTools",
    "FileopsClient",
    "InfraProblem",
    "apply_reorg_plan",
    "classify",
    "close_default_client",
    "default_client",
    "file_ops_tools",
    "langchain_tool",
    "result_of",
    "submit_file_ops_plan",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fileops_daemon.client' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
