"""Every line the daemon writes is one JSON object with a Cloud Logging severity."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from google.api_core import client_logging

from fileops_daemon.logs import configure_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root, google = logging.getLogger(), logging.getLogger("google")
    saved = root.handlers[:], root.level, google.level, google.propagate
    out = io.StringIO()
    configure_logging(json_output=True, stream=out)
    try:
        yield out
    finally:
        root.handlers, level, google_level, google.propagate = saved
        root.setLevel(level)
        google.setLevel(google_level)
        structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_our_lines_carry_severity_and_bound_fields(stream: io.StringIO) -> None:
    structlog.get_logger("fileops.test").bind(plan_id="p-1", case_name="C").warning("x.y", n=2)
    [line] = lines(stream)
    assert line["severity"] == "WARNING" and line["message"] == "x.y"
    assert (line["plan_id"], line["case_name"], line["n"]) == ("p-1", "C", 2)


@pytest.mark.parametrize("clients_first", [False, True])
def test_a_library_warning_is_a_json_line_too(stream: io.StringIO, clients_first: bool) -> None:
    # What google-api-core does to the "google" logger when the first client is made.
    google = logging.getLogger("google")
    if clients_first:  # a client made before logging was set up: the cut already happened
        google.setLevel(logging.NOTSET)
        google.propagate = False
        configure_logging(json_output=True, stream=stream)
    client_logging.setup_logging("")
    library = logging.getLogger("google.api_core.bidi")
    library.warning("Background thread did not exit.")
    try:
        raise ConnectionError("stream reset")
    except ConnectionError:
        library.exception("Top-level exception occurred in callback")
    warning, error = lines(stream)
    assert warning["severity"] == "WARNING"
    assert warning["message"] == "Background thread did not exit."
    assert warning["logger"] == "google.api_core.bidi" and "timestamp" in warning
    assert error["severity"] == "ERROR" and "ConnectionError: stream reset" in str(
        error["exception"]
    )


def test_library_chatter_below_warning_is_dropped(stream: io.StringIO) -> None:
    logging.getLogger("google.auth.transport").info("refreshing credentials")
    logging.getLogger("urllib3.connectionpool").debug("GET /storage/v1/b/x")
    assert stream.getvalue() == ""


def test_the_daemons_own_lines_name_their_logger(stream: io.StringIO) -> None:
    from fileops_daemon.core.execute import log as execute_log
    from fileops_daemon.service.handler import log as handler_log

    handler_log.info("plan.received", plan_id="p-1")
    execute_log.info("plan.step")
    assert [line["logger"] for line in lines(stream)] == ["fileops.handler", "fileops.execute"]
