"""Logging setup: structlog, JSON with Cloud Logging ``severity`` in production, one place.

The libraries underneath (Pub/Sub, GCS, gRPC, tenacity) log through the standard library;
their warnings and errors go through the same renderer, so every line the daemon writes is
one JSON object Cloud Logging can read.
"""

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


class _NamedPrintLogger(structlog.PrintLogger):
    """A PrintLogger that keeps the name ``structlog.get_logger(name)`` gave it, for
    ``add_logger_name`` (the plain one drops it)."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


def configure_logging(
    *, json_output: bool, level: str = "INFO", stream: TextIO | None = None
) -> None:
    """Route structlog, and library logging of WARNING and above, to ``stream`` (stderr by
    default); stdout stays free for results."""
    stream = stream or sys.stderr
    stamp: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    render: list[Any]
    if json_output:
        render = [
            _cloud_severity,
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(),
        ]
    else:
        # Plain tracebacks whether or not rich is around (see fileops_daemon/__init__.py).
        render = [
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            )
        ]
    numeric_level = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_logger_name,
            *stamp,
            *render,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=lambda name="fileops", *_: _NamedPrintLogger(stream, name),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *stamp],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *render],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    # Libraries are chatty below WARNING (every request, every retry): keep them out.
    root.setLevel(max(logging.WARNING, numeric_level))
    # google-api-core cuts its "google" logger off from the root when the first client is made,
    # unless that logger is configured already: configure it, and undo an earlier cut.
    google = logging.getLogger("google")
    google.setLevel(root.level)
    google.propagate = True
