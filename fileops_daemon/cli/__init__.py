"""``fileops``: the command line (local plan/apply/undo, the operators' commands, the daemon)."""

from __future__ import annotations

from fileops_daemon.cli.main import main

__all__ = ["main"]
