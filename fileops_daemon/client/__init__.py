"""The agent side: publish plans, wait for their results, and the tools LLM agents call."""

from __future__ import annotations

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
