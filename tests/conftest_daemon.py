"""Fixtures of the daemon integration tests; loaded by the test modules that need them
(``pytest_plugins``).

- ``emulators`` (session, parametrised): every test that uses it runs twice, on pstest and on
  Google's official Pub/Sub emulator (``[pstest]`` / ``[gcloud]`` in the test id), or once on
  the emulator already in ``PUBSUB_EMULATOR_HOST``; plus an in-memory fake-gcs-server. Each
  Pub/Sub emulator's capabilities are probed once (tests/emulators/capabilities.py); a test
  marked ``needs_pubsub("dead_letter")`` runs only where the probe found it, and the run's
  summary lists what did not run where, and why.
- ``make_stack`` / ``stack``: one test's :class:`~tests.daemon_support.Stack` (own project id,
  buckets, folders, clients and daemons); every daemon it started is stopped in teardown.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bigquery_schema import audit_problems
from tests.daemon_support import Emulators, Stack
from tests.emulators import harness
from tests.emulators.capabilities import CAPABILITIES, probe_all


def pubsub_kinds() -> list[str]:
    """The Pub/Sub emulators the integration tests run on."""
    return ["external"] if os.environ.get("PUBSUB_EMULATOR_HOST") else ["pstest", "gcloud"]


@pytest.fixture(scope="session", params=pubsub_kinds())
def emulators(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Emulators]:
    kind: str = request.param
    logs = tmp_path_factory.mktemp(f"emulator-logs-{kind}")
    with contextlib.ExitStack() as stack:
        if kind == "external":
            pubsub_host = os.environ["PUBSUB_EMULATOR_HOST"]
        elif kind == "gcloud":
            pubsub_host = stack.enter_context(
                harness.gcloud_pubsub_emulator(log_path=logs / "gcloud-pubsub.log")
            )
        else:
            pubsub_host = stack.enter_context(harness.pubsub_emulator(log_path=logs / "pstest.log"))
        found = probe_all(pubsub_host)
        capabilities = frozenset(name for name, present in found.items() if present)
        gcs = stack.enter_context(harness.gcs_emulator(log_path=logs / "fake-gcs.log"))
        yield Emulators(pubsub_host, gcs, kind == "external", kind, capabilities)


#: Projects of stacks whose audit records could not be read back to check (their own GCS).
AUDIT_NOT_CHECKED: list[str] = []

#: (emulator, why) -> test ids that did not run there; printed in the run's summary.
NOT_RUN: dict[tuple[str, str], list[str]] = {}


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Without Google's emulator on this machine its half of the matrix is skipped, loudly."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or callspec.params.get("emulators") != "gcloud":
        return
    if harness.gcloud_pubsub_emulator_command() is None:
        reason = (
            "Google's official Pub/Sub emulator is not installed, so this test ran on pstest "
            f"only: {harness.GCLOUD_EMULATOR_INSTALL_HINT}"
        )
        NOT_RUN.setdefault(("gcloud", reason), []).append(item.nodeid)
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def _pubsub_capabilities(request: pytest.FixtureRequest) -> None:
    """Skip, loudly, a test that needs what this emulator does not do."""
    marker = request.node.get_closest_marker("needs_pubsub")
    if marker is None or "emulators" not in request.fixturenames:
        return
    emulators: Emulators = request.getfixturevalue("emulators")
    missing = [name for name in marker.args if name not in emulators.capabilities]
    if missing:
        reason = "; ".join(
            f"the {emulators.pubsub_kind} Pub/Sub emulator lacks {name} ({CAPABILITIES[name]})"
            for name in missing
        )
        NOT_RUN.setdefault((emulators.pubsub_kind, reason), []).append(request.node.nodeid)
        pytest.skip(reason)


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
    # Every audit record a test made the daemons write is a row BigQuery takes.
    problems = [problem for stack in stacks for problem in _audit_rows(stack, emulators)]
    assert not problems, "audit records BigQuery would refuse:\n" + "\n".join(problems)


def _audit_rows(stack: Stack, emulators: Emulators) -> list[str]:
    """Problems of the stack's audit objects against schemas/*.bigquery.json. Read through
    the suite's fake-gcs-server: a proxy in front of it is gone by now. A stack on a GCS
    emulator of its own (stopped by its test) is listed in the run's summary, unchecked."""
    from google.api_core.exceptions import NotFound
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project=stack.project,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": emulators.gcs_endpoint},
    )
    try:
        return audit_problems(client, stack.audit_bucket)
    except NotFound:
        if stack.gcs_endpoint == emulators.gcs_endpoint:
            return []  # never bootstrapped: no audit bucket, no records
        AUDIT_NOT_CHECKED.append(stack.project)
        return []


@pytest.fixture
def stack(make_stack: Callable[..., Stack]) -> Stack:
    return make_stack()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say loudly which integration tests did not run on which Pub/Sub emulator, and why."""
    if AUDIT_NOT_CHECKED:
        terminalreporter.section("audit records not checked against BigQuery", sep="!")
        terminalreporter.write_line(
            f"{len(AUDIT_NOT_CHECKED)} stack(s) on a GCS emulator of their own, stopped before "
            f"teardown: {', '.join(AUDIT_NOT_CHECKED)}"
        )
    if not NOT_RUN:
        return
    terminalreporter.section("not run on every Pub/Sub emulator", sep="!", bold=True)
    for (kind, reason), ids in sorted(NOT_RUN.items()):
        terminalreporter.write_line(f"{kind}: {len(ids)} test(s) not run: {reason}")
        for nodeid in ids:
            terminalreporter.write_line(f"    {nodeid}")
