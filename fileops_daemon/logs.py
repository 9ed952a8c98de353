"""Logging setup: structlog, JSON with Cloud Logging ``severity`` in production, one place."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

__all__ = ["configure_logging"]


def _cloud_severity(_logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Cloud Logging reads ``severity`` (and ``message``) from JSON lines."""
    level = event.pop("level", method)
    event["severity"] = {"warn": "WARNING", "exception": "ERROR"}.get(level, level.upper())
    return event


def configure_logging(
    *, json_output: bool, level: str = "INFO", stream: TextIO | None = None
) -> None:
    """Route structlog to ``stream`` (stderr by default); stdout stays free for results."""
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if json_output:
        processors += [
            _cloud_severity,
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
