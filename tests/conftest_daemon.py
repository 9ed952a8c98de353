"""Fixtures of the daemon integration tests; loaded by tests/test_daemon.py (pytest_plugins).

- ``emulators`` (session): pstest, or the emulator already in ``PUBSUB_EMULATOR_HOST``, and an
  in-memory fake-gcs-server, each started once.
- ``make_stack`` / ``stack``: one test's :class:`~tests.daemon_support.Stack` (own project id,
  buckets, folders, clients and daemons); every daemon it started is stopped in teardown.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon_support import Emulators, Stack
from tests.emulators import harness


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    logs = tmp_path_factory.mktemp("emulator-logs")
    with contextlib.ExitStack() as stack:
        external = os.environ.get("PUBSUB_EMULATOR_HOST", "")
        if external:
            pubsub_host = external
        else:
            pubsub_host = stack.enter_context(harness.pubsub_emulator(log_path=logs / "pstest.log"))
        gcs = stack.enter_context(harness.gcs_emulator(log_path=logs / "fake-gcs.log"))
        yield Emulators(pubsub_host, gcs, bool(external))


@pytest.fixture
def make_stack(
    emulators: Emulators, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Stack]]:
    """Build a :class:`Stack` (optionally on another GCS endpoint); all are closed after."""
    stacks: list[Stack] = []

    def build(gcs_endpoint: str | None = None, name: str = "stack") -> Stack:
        endpoint = gcs_endpoint or emulators.gcs_endpoint
        # The test process's own clients find the emulators the usual way.
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulators.pubsub_host)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
        stack = Stack(tmp=tmp_path / name, emulators=emulators, gcs_endpoint=endpoint)
        stacks.append(stack)
        return stack

    try:
        yield build
    finally:
        for stack in stacks:
            stack.close()
            if stack.daemons:  # shown by pytest only when the test failed
                print(f"daemon logs in {stack.logs}:\n{stack.logs_tail(40)}")


@pytest.fixture
def stack(make_stack: Callable[..., Stack]) -> Stack:
    return make_stack()
