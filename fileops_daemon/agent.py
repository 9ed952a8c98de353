"""Kept so ``from fileops_daemon.agent import ...`` (the import path of earlier releases) keeps
working; the tools live in :mod:`fileops_daemon.client`."""

from __future__ import annotations

from fileops_daemon.client.tools import (
    TOOL_DESCRIPTION,
    apply_reorg_plan,
    default_client,
    langchain_tool,
    submit_file_ops_plan,
    summarize,
)

__all__ = [
    "TOOL_DESCRIPTION",
    "apply_reorg_plan",
    "default_client",
    "langchain_tool",
    "submit_file_ops_plan",
    "summarize",
]
