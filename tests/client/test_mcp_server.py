"""``fileops mcp``: the agent tools through the official MCP SDK's client, over stdio and over
streamable HTTP, against a running daemon on the emulators."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from fileops_daemon.client.toolargs import PLAN_ARGS, STATUS_ARGS, UNDO_ARGS
from tests.client.test_langgraph_agent import plan_args
from tests.daemon_support import Stack
from tests.emulators.harness import free_port
from tests.support import CASE, snapshot

pytest_plugins = ["tests.conftest_daemon"]

FILEOPS = [sys.executable, "-m", "fileops_daemon.cli"]


@pytest.fixture
def seeded(stack: Stack) -> Stack:
    stack.bootstrap()
    case = stack.case(CASE, {"uncategorized/file1.pdf": "one\n", "uncategorized/file2.pdf": "2\n"})
    (case / "Medical Records").mkdir()
    return stack


def stdio(stack: Stack, **env: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=FILEOPS[0], args=[*FILEOPS[1:], "mcp"], env=stack.env(**env)
    )


def call(client: Any, name: str, arguments: dict[str, Any]) -> Any:
    return client.call_tool(name, arguments, read_timeout_seconds=90)


@pytest.fixture
def http_server(seeded: Stack) -> Iterator[str]:
    port = free_port()
    log = (seeded.tmp / "mcp-http.log").open("wb")
    proc = subprocess.Popen(
        [*FILEOPS, "mcp", "--http", "--port", str(port)],
        env=seeded.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                import socket

                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((seeded.tmp / "mcp-http.log").read_text()) from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_stdio_lists_the_four_strict_tools_and_applies_then_undoes(seeded: Stack) -> None:
    seeded.start_daemon("a")
    before = snapshot(seeded.root, skip_work_dirs=True)

    async def session() -> list[tuple[str, Any]]:
        async with Client(stdio(seeded)) as client:
            listed = await client.list_tools()
            schemas = {tool.name: tool.input_schema for tool in listed.tools}
            assert schemas == {
                "preview_file_ops": PLAN_ARGS,
                "apply_file_ops": PLAN_ARGS,
                "file_ops_status": STATUS_ARGS,
                "undo_file_ops": UNDO_ARGS,
            }
            answers = []
            for name, arguments in (
                ("preview_file_ops", plan_args("mcp-1")),
                ("apply_file_ops", plan_args("mcp-1")),
                ("file_ops_status", {"plan_id": "mcp-1"}),
                ("undo_file_ops", {"plan_id": "mcp-1", "case_name": CASE, "dry_run": False}),
            ):
                answers.append((name, await call(client, name, arguments)))
            return answers

    answers = anyio.run(session)
    statuses = [(name, result.structured_content["status"]) for name, result in answers]
    assert statuses == [
        ("preview_file_ops", "planned"),
        ("apply_file_ops", "applied"),
        ("file_ops_status", "applied"),
        ("undo_file_ops", "applied"),
    ]
    assert not any(result.is_error for _name, result in answers)
    # The model reads text that tells it the next step; the document rides alongside.
    preview_text = answers[0][1].content[0].text
    assert "apply_file_ops" in preview_text
    assert snapshot(seeded.root, skip_work_dirs=True) == before


def test_http_serves_the_same_tools(seeded: Stack, http_server: str) -> None:
    seeded.start_daemon("a")

    async def session() -> tuple[list[str], Any]:
        async with Client(http_server) as client:
            names = [tool.name for tool in (await client.list_tools()).tools]
            return names, await call(client, "preview_file_ops", plan_args("mcp-http-1"))

    names, preview = anyio.run(session)
    assert names == ["preview_file_ops", "apply_file_ops", "file_ops_status", "undo_file_ops"]
    assert preview.structured_content["status"] == "planned"
    assert preview.structured_content["plan_id"] == "mcp-http-1"


def test_bad_calls_and_missing_setup_are_answered_as_tool_errors(seeded: Stack) -> None:
    """No exception reaches the MCP client: an unknown tool or argument, a required argument
    left out or null, and a process with no project configured, each come back as a result
    with is_error set."""
    no_operations = {k: v for k, v in plan_args("mcp-noops").items() if k != "operations"}

    async def session() -> list[Any]:
        async with Client(stdio(seeded, FILEOPS_PROJECT="", GOOGLE_CLOUD_PROJECT="")) as client:
            return [
                await call(client, "rm_rf", {}),
                await call(client, "file_ops_status", {"plan_id": "x", "force": True}),
                await call(client, "preview_file_ops", plan_args("mcp-noproject")),
                await call(client, "preview_file_ops", no_operations),
                await call(client, "apply_file_ops", {**no_operations, "operations": None}),
                await call(client, "undo_file_ops", {"plan_id": "x", "case_name": CASE}),
            ]

    unknown_tool, unknown_arg, no_project, *missing = anyio.run(session)
    left_out, null, no_dry_run = missing
    for answer in (left_out, null):
        assert answer.is_error
        assert answer.structured_content["problem"] == "missing_argument"
        assert "operations is required: a list of file operations" in answer.content[0].text
        assert "not of type" not in answer.content[0].text
    assert no_dry_run.is_error and "dry_run is required" in no_dry_run.content[0].text
    assert unknown_tool.is_error and "preview_file_ops" in unknown_tool.content[0].text
    assert unknown_arg.is_error and "force" in unknown_arg.content[0].text
    assert no_project.is_error
    assert no_project.structured_content["status"] == "error"
    assert "FILEOPS_PROJECT" in no_project.content[0].text


def test_http_refuses_to_listen_beyond_this_machine(seeded: Stack) -> None:
    done = subprocess.run(
        [*FILEOPS, "mcp", "--http", "--host", "0.0.0.0", "--port", str(free_port())],
        env=seeded.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "not a loopback address" in done.stderr
