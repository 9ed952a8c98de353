"""A client's results subscription: made with an expiry and a retention, deleted by close(),
by the end of a ``with`` block, and for the shared default client at interpreter exit; the
async tools wait in short steps, so they do not hold a worker thread."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from fileops_daemon.client import ClientConfig, FileopsClient, FileOpsTools
from fileops_daemon.client.toolbox import ASYNC_STEP
from tests.daemon_support import Stack
from tests.emulators import harness
from tests.emulators.harness import REPO_ROOT
from tests.support import CASE

pytest_plugins = ["tests.conftest_daemon"]

PLAN: dict[str, Any] = {
    "plan_id": "life-1",
    "case_name": CASE,
    "operations": [{"type": "mkdir", "path": f"{CASE}/x"}],
}


def client_subscriptions(stack: Stack) -> set[str]:
    listed = stack.subscriber.list_subscriptions(project=f"projects/{stack.project}")
    return {s.name for s in listed if "/fileops-results-c" in s.name}


def test_close_deletes_the_subscription_made_with_an_expiry(stack: Stack) -> None:
    stack.bootstrap()
    client = FileopsClient(ClientConfig(project=stack.project))
    client.publish(PLAN)
    assert client_subscriptions(stack) == {client.subscription}
    made = stack.subscriber.get_subscription(subscription=client.subscription)
    # pstest keeps both settings (no emulator expires anything within a test; Pub/Sub itself
    # deletes a subscription unused for the ttl). Google's emulator takes the request; whether
    # it echoes the settings was not checked, so they are asserted on pstest only.
    if stack.emulators.pubsub_kind == "pstest":
        assert made.expiration_policy.ttl.total_seconds() == 24 * 3600
        assert made.message_retention_duration.total_seconds() == 600
    client.close()
    client.close()  # twice is fine
    assert client_subscriptions(stack) == set()


def test_the_shared_client_is_closed_at_interpreter_exit(stack: Stack) -> None:
    stack.bootstrap()
    script = textwrap.dedent(
        """
        import json, sys
        from fileops_daemon.client import FileOpsTools, default_client
        result = FileOpsTools(timeout=0.5).preview(
            plan_id="life-2", case_name=sys.argv[1], reason=None,
            operations=[{"type": "mkdir", "path": sys.argv[1] + "/x", "from": None,
                         "to": None, "content": None, "overwrite": None}],
        )
        print(json.dumps({"status": result["status"], "sub": default_client().subscription}))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script, CASE],
        cwd=REPO_ROOT,
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert '"status": "pending"' in run.stdout  # no daemon runs: it was sent, then left
    assert "/fileops-results-c" in run.stdout
    assert client_subscriptions(stack) == set(), "the agent left its subscription behind"


def test_close_returns_quickly_when_the_emulator_is_gone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from google.cloud import pubsub_v1

    with harness.pubsub_emulator(log_path=tmp_path / "pstest.log") as host:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", host)
        publisher = pubsub_v1.PublisherClient()
        for topic in ("fileops-plans", "fileops-results"):
            publisher.create_topic(name=f"projects/gone/topics/{topic}")
        client = FileopsClient(ClientConfig(project="gone", connect_timeout=1))
        client.publish(PLAN)  # the subscription exists: close() has one to delete
    began = time.monotonic()
    client.close()  # the host is gone: it gives up quietly (the subscription would expire)
    assert time.monotonic() - began < 4


def test_an_async_wait_leaves_the_worker_thread_free_between_steps(stack: Stack) -> None:
    stack.bootstrap()  # and no daemon: the preview waits its whole timeout

    async def scenario(tools: FileOpsTools) -> tuple[dict[str, Any], float]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
        waiting = asyncio.create_task(tools.apreview(**tool_args()))
        await asyncio.sleep(1.5)  # the subscription exists, the wait has begun
        began = time.monotonic()
        await asyncio.to_thread(time.sleep, 0)  # needs the one worker thread
        took = time.monotonic() - began
        return await waiting, took

    with FileopsClient(ClientConfig(project=stack.project)) as client:
        result, took = asyncio.run(scenario(FileOpsTools(client, timeout=5)))
    assert result["status"] == "pending"
    assert took < ASYNC_STEP + 1.0, f"the other job waited {took:.1f} s for the thread"


def tool_args() -> dict[str, Any]:
    op = {"type": "mkdir", "path": f"{CASE}/x", "from": None, "to": None, "content": None}
    return {
        "plan_id": "life-3",
        "case_name": CASE,
        "reason": None,
        "operations": [{**op, "overwrite": None}],
    }
