"""The agent side: publish plans, wait for their results, and the tools LLM agents call."""

from __future__ import annotations

from fileops_daemon.client.api import ClientConfig, FileopsClient, result_of
from fileops_daemon.client.tools import (
    TOOL_DESCRIPTION,
    apply_reorg_plan,
    langchain_tool,
    submit_file_ops_plan,
)

__all__ = [
    "TOOL_DESCRIPTION",
    "ClientConfig",
    "FileopsClient",
    "apply_reorg_plan",
    "langchain_tool",
    "result_of",
    "submit_file_ops_plan",
]
