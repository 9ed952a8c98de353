"""fileops-daemon: applies AI agents' file-operation plans safely to a projects folder."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
