"""A real LangGraph agent (a scripted chat model) previews, applies, follows up and undoes a
plan through the four tools against a running daemon on the emulators; sync and async."""

from __future__ import annotations

import asyncio
import itertools
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver

from fileops_daemon.client import ClientConfig, FileopsClient, file_ops_tools
from tests.daemon_support import Stack
from tests.support import CASE, SEED_OPS, snapshot

pytest_plugins = ["tests.conftest_daemon"]


class ScriptedModel(GenericFakeChatModel):
    """Says the scripted messages in turn; takes tools like a real chat model."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedModel:
        return self


_ids = itertools.count(1)


def call(name: str, **args: Any) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"c{next(_ids)}"}])


def strict_ops(operations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The operations as a strict model writes them: every field, unused ones null."""
    empty = {"path": None, "from": None, "to": None, "content": None, "overwrite": None}
    return [{**empty, **op} for op in operations]


def plan_args(plan_id: str) -> dict[str, Any]:
    return {
        "plan_id": plan_id,
        "case_name": CASE,
        "operations": strict_ops(SEED_OPS),
        "reason": "file the scans",
    }


def artifacts(messages: list[BaseMessage]) -> list[tuple[str, dict[str, Any]]]:
    """(tool name, result document) of every tool answer, in order."""
    return [(m.name or "", m.artifact) for m in messages if isinstance(m, ToolMessage)]


def agent(script: list[AIMessage], tools: list[Any], checkpointer: Any = None) -> Any:
    """The graph docs/agents.md builds: ``langchain.agents.create_agent``, which LangGraph
    1.0 points to in place of its deprecated ``create_react_agent``."""
    model = ScriptedModel(messages=iter(script))
    return create_agent(model, tools, checkpointer=checkpointer)


def test_building_the_agent_warns_of_nothing_deprecated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FILEOPS_PROJECT", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        agent([AIMessage("hi")], file_ops_tools())
    old = (DeprecationWarning, PendingDeprecationWarning)  # LangGraph's and LangChain's too
    deprecated = [w for w in caught if issubclass(w.category, old)]
    assert deprecated == [], [str(w.message) for w in deprecated]


@pytest.fixture
def seeded(stack: Stack) -> Stack:
    stack.bootstrap()
    case = stack.case(CASE, {"uncategorized/file1.pdf": "one\n", "uncategorized/file2.pdf": "2\n"})
    (case / "Medical Records").mkdir()
    return stack


@pytest.fixture
def client(seeded: Stack) -> Iterator[FileopsClient]:
    with FileopsClient(ClientConfig(project=seeded.project)) as made:
        yield made


def test_preview_pending_status_apply_and_undo(seeded: Stack, client: FileopsClient) -> None:
    tools = file_ops_tools(client, timeout=30, status_wait=30, requested_by="paralegal-bot")
    memory = InMemorySaver()
    thread = {"configurable": {"thread_id": "case-1"}}
    before = snapshot(seeded.root, skip_work_dirs=True)

    # No daemon runs yet: the preview is queued, and the agent is told to follow it up.
    quick = file_ops_tools(client, timeout=1.5)
    first = agent(
        [call("preview_file_ops", **plan_args("lg-1")), AIMessage("I'll check later.")],
        quick,
        memory,
    ).invoke({"messages": [("user", "File the scans of the Abby case")]}, thread)
    [(name, pending)] = artifacts(first["messages"])
    assert (name, pending["status"]) == ("preview_file_ops", "pending")
    assert "file_ops_status" in first["messages"][-2].content

    seeded.start_daemon("a")
    script = [
        call("file_ops_status", plan_id="lg-1"),
        call("apply_file_ops", **plan_args("lg-1")),
        call("undo_file_ops", plan_id="lg-1", case_name=CASE, dry_run=True),
        call("undo_file_ops", plan_id="lg-1", case_name=CASE, dry_run=False),
        call("file_ops_status", plan_id="lg-1.undo"),
        AIMessage("Filed the scans, then put everything back."),
    ]
    second = agent(script, tools, memory).invoke(
        {"messages": [("user", "Apply it, then undo it")]}, thread
    )
    answers = artifacts(second["messages"])[1:]  # the first run's answer is in the history
    statuses = [(name, result["status"]) for name, result in answers]
    assert statuses == [
        ("file_ops_status", "planned"),
        ("apply_file_ops", "applied"),
        ("undo_file_ops", "planned"),
        ("undo_file_ops", "applied"),
        ("file_ops_status", "applied"),
    ], answers
    assert answers[2][1]["plan_id"] == "lg-1.undo"
    assert snapshot(seeded.root, skip_work_dirs=True) == before
    # The model read words; the daemon recorded who asked.
    texts = [m.content for m in second["messages"] if isinstance(m, ToolMessage)]
    assert "apply_file_ops" in texts[1] and "Medical Records/file1.pdf" in texts[1]
    assert "dry_run false" in texts[3]
    audit = seeded.audit_records()
    assert {r.get("requested_by") for r in audit.values()} >= {"paralegal-bot"}, audit


def test_the_async_tools_in_an_async_graph(seeded: Stack, client: FileopsClient) -> None:
    seeded.start_daemon("a")
    tools = file_ops_tools(client, timeout=30)
    before = snapshot(seeded.root, skip_work_dirs=True)
    script = [
        call("preview_file_ops", **plan_args("lg-2")),
        call("apply_file_ops", **plan_args("lg-2")),
        call("file_ops_status", plan_id="lg-2"),
        call("undo_file_ops", plan_id="lg-2", case_name=CASE, dry_run=False),
        call("file_ops_status", plan_id="never-sent"),
        AIMessage("done"),
    ]
    state = asyncio.run(agent(script, tools).ainvoke({"messages": [("user", "go")]}))
    answers = artifacts(state["messages"])
    assert [(name, r["status"]) for name, r in answers] == [
        ("preview_file_ops", "planned"),
        ("apply_file_ops", "applied"),
        ("file_ops_status", "applied"),
        ("undo_file_ops", "applied"),
        ("file_ops_status", "error"),
    ], answers
    assert answers[-1][1]["problem"] == "unknown_plan"
    assert snapshot(seeded.root, skip_work_dirs=True) == before


def test_a_plan_the_daemon_refuses_reaches_the_model_as_codes(
    seeded: Stack, client: FileopsClient
) -> None:
    seeded.start_daemon("a")
    ops = strict_ops([{"type": "move", "from": f"{CASE}/nope.pdf", "to": f"{CASE}/x.pdf"}])
    script = [
        call("preview_file_ops", plan_id="lg-3", case_name=CASE, operations=ops, reason=None),
        AIMessage("It does not exist."),
    ]
    state = agent(script, file_ops_tools(client, timeout=30)).invoke({"messages": [("user", "x")]})
    [(_, result)] = artifacts(state["messages"])
    assert result["status"] == "rejected"
    assert result["operations"][0]["code"] == "source_missing"
    assert "new plan_id" in state["messages"][-2].content


def test_the_tools_answer_without_an_emulator_as_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The whole graph run completes: the model reads what is wrong instead of a crash."""
    monkeypatch.delenv("FILEOPS_PROJECT", raising=False)
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    script = [call("preview_file_ops", **plan_args("lg-4")), AIMessage("Cannot reach it.")]
    state = agent(script, file_ops_tools()).invoke({"messages": [("user", "x")]})
    [(_, result)] = artifacts(state["messages"])
    assert result["status"] == "error" and result["problem"] == "config"
    assert "FILEOPS_PROJECT" in state["messages"][-2].content
    assert state["messages"][-1].content == "Cannot reach it."


def test_an_interrupt_gates_the_apply_alone(seeded: Stack, client: FileopsClient) -> None:
    """A person approves applies: the preview runs freely, the apply waits for a resume."""
    from langchain_core.tools import StructuredTool
    from langgraph.types import Command, interrupt

    seeded.start_daemon("a")
    preview, apply, *rest = file_ops_tools(client, timeout=30)

    def approved_apply(**arguments: Any) -> tuple[str, dict[str, Any]]:
        if interrupt({"tool": apply.name, "plan_id": arguments["plan_id"]}) != "approve":
            return "A person declined this apply.", {"status": "declined"}
        answer: tuple[str, dict[str, Any]] = apply.func(**arguments)
        return answer

    gated = StructuredTool.from_function(
        func=approved_apply,
        name=apply.name,
        description=apply.description,
        args_schema=apply.args_schema,
        response_format="content_and_artifact",
    )
    script = [
        call("preview_file_ops", **plan_args("lg-5")),
        call("apply_file_ops", **plan_args("lg-5")),
        AIMessage("Applied."),
    ]
    graph = agent(script, [preview, gated, *rest], InMemorySaver())
    thread = {"configurable": {"thread_id": "gate"}}
    before = snapshot(seeded.root, skip_work_dirs=True)
    paused = graph.invoke({"messages": [("user", "file the scans")]}, thread)
    [(name, previewed)] = artifacts(paused["messages"])
    assert (name, previewed["status"]) == ("preview_file_ops", "planned")
    [waiting] = paused["__interrupt__"]
    assert waiting.value == {"tool": "apply_file_ops", "plan_id": "lg-5"}
    assert snapshot(seeded.root, skip_work_dirs=True) == before  # nothing applied yet
    done = graph.invoke(Command(resume="approve"), thread)
    assert [r["status"] for _, r in artifacts(done["messages"])] == ["planned", "applied"]
    assert (seeded.root / CASE / "Medical Records" / "file1.pdf").read_text() == "one\n"
