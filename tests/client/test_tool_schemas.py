"""The agent tools' argument schemas: OpenAI strict mode and Anthropic take them, and a plan a
strict model writes (every field present, unused ones null) is a valid plan."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

from fileops_daemon.client import file_ops_tools, langchain_tool
from fileops_daemon.client.answers import local_refusal
from fileops_daemon.client.toolargs import PLAN_ARGS, plan_document
from fileops_daemon.contract.plan import Expect, load_schema, parse_plan
from tests.support import CASE

NAMES = ["preview_file_ops", "apply_file_ops", "file_ops_status", "undo_file_ops"]
#: What OpenAI strict mode refuses (or ignores and then breaks on).
FORBIDDEN = {
    "allOf",
    "anyOf",
    "oneOf",
    "if",
    "then",
    "else",
    "not",
    "propertyNames",
    "patternProperties",
    "default",
    "minProperties",
    "maxProperties",
}


def objects(schema: Any) -> Iterator[dict[str, Any]]:
    """Every sub-schema of type object in ``schema``."""
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "object" or (isinstance(kind, list) and "object" in kind):
            yield schema
        for value in schema.values():
            yield from objects(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from objects(value)


def keywords(schema: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            found.add(key)
            # A property's name is not a keyword: look into its schema, not its name.
            found |= keywords(list(value.values()) if key == "properties" else value)
    elif isinstance(schema, list):
        for value in schema:
            found |= keywords(value)
    return found


def strict_problems(parameters: dict[str, Any]) -> list[str]:
    problems = [f"forbidden keyword {k}" for k in sorted(keywords(parameters) & FORBIDDEN)]
    for node in objects(parameters):
        if node.get("additionalProperties") is not False:
            problems.append(f"additionalProperties not false in {sorted(node['properties'])}")
        if sorted(node.get("required", [])) != sorted(node["properties"]):
            problems.append(f"not every property required in {sorted(node['properties'])}")
    return problems


def strict_plan_arguments() -> dict[str, Any]:
    """What a strict model writes: every field of every operation, unused ones null."""
    none = {
        "path": None,
        "from": None,
        "to": None,
        "content": None,
        "encoding": None,
        "overwrite": None,
        "expect": None,
    }
    nothing_expected = {"size": None, "sha256": None, "files": None}
    return {
        "plan_id": "strict-1",
        "case_name": CASE,
        "reason": None,
        "operations": [
            {**none, "type": "mkdir", "path": f"{CASE}/Medical Records"},
            {
                **none,
                "type": "move",
                "from": f"{CASE}/a.pdf",
                "to": f"{CASE}/b.pdf",
                "overwrite": False,
            },
            {
                **none,
                "type": "copy",
                "from": f"{CASE}/b.pdf",
                "to": f"{CASE}/c.pdf",
                "overwrite": True,
            },
            {**none, "type": "delete", "path": f"{CASE}/old.txt", "overwrite": False},
            {**none, "type": "write", "path": f"{CASE}/n.txt", "content": "hi"},
            {
                **none,
                "type": "move",
                "from": f"{CASE}/c.pdf",
                "to": f"{CASE}/d.pdf",
                "expect": {**nothing_expected, "size": 3, "sha256": "ab" * 32},
            },
            {
                **none,
                "type": "delete",
                "path": f"{CASE}/Medical Records",
                "expect": {**nothing_expected, "files": 0},
            },
            {**none, "type": "delete", "path": f"{CASE}/e.pdf", "expect": nothing_expected},
            {
                **none,
                "type": "write",
                "path": f"{CASE}/b.bin",
                "content": "AAE=",
                "encoding": "base64",
            },
            {**none, "type": "write", "path": f"{CASE}/t.txt", "content": "x", "encoding": "text"},
        ],
    }


def tool_call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "args": args, "id": "call-1", "type": "tool_call"}


class TestStrictSchemas:
    def test_the_four_tools(self) -> None:
        tools = file_ops_tools()
        assert [t.name for t in tools] == NAMES
        assert all(t.coroutine is not None and t.func is not None for t in tools)

    @pytest.mark.parametrize("index", range(len(NAMES)), ids=NAMES)
    def test_openai_strict_takes_each_tool(self, index: int) -> None:
        converted = convert_to_openai_tool(file_ops_tools()[index], strict=True)
        function = converted["function"]
        assert function["strict"] is True and function["name"] == NAMES[index]
        parameters = function["parameters"]
        assert parameters["type"] == "object"
        assert strict_problems(parameters) == []
        # Nothing a model may not set is offered to it.
        assert not {"undo_of", "requested_by"} & keywords(parameters["properties"]) - {"type"}
        assert not {"undo_of", "requested_by"} & set(parameters["properties"])

    def test_the_checker_catches_what_broke_the_first_tool(self) -> None:
        converted = convert_to_openai_tool(langchain_tool(), strict=True)
        problems = strict_problems(converted["function"]["parameters"])
        assert any("allOf" in p for p in problems)
        assert any("propertyNames" in p for p in problems)

    @pytest.mark.parametrize("index", range(len(NAMES)), ids=NAMES)
    def test_anthropic_input_schema(self, index: int) -> None:
        tool = file_ops_tools()[index]
        try:
            from langchain_anthropic.chat_models import convert_to_anthropic_tool
        except ImportError:  # the shape Anthropic's Messages API asks for, checked directly
            shaped = {
                "name": tool.name,
                "description": tool.description,
                "input_schema": tool.tool_call_schema,
            }
        else:
            shaped = dict(convert_to_anthropic_tool(tool))
        assert shaped["name"] == NAMES[index]
        assert shaped["description"]
        schema = shaped["input_schema"]
        assert schema["type"] == "object" and isinstance(schema["properties"], dict)
        json.dumps(schema)  # plain JSON

    def test_an_operation_offers_every_field_of_the_plan_schema_expect_and_encoding_too(
        self,
    ) -> None:
        plan_schema = load_schema("plan")["$defs"]
        offered = PLAN_ARGS["properties"]["operations"]["items"]["properties"]
        assert set(offered) == set(plan_schema["operation"]["properties"])
        assert set(offered["expect"]["properties"]) == set(plan_schema["expect"]["properties"])
        assert "null" in offered["expect"]["type"]
        assert offered["encoding"]["enum"] == [
            *plan_schema["operation"]["properties"]["encoding"]["enum"],
            None,
        ]

    def test_the_four_tools_cost_less_than_the_first_one(self) -> None:
        def size(tool: Any) -> int:
            return len(json.dumps(convert_to_openai_tool(tool)))

        assert sum(size(t) for t in file_ops_tools()) < size(langchain_tool())


class TestPlanFromArguments:
    def test_a_strict_models_plan_is_a_valid_plan(self) -> None:
        document = plan_document(strict_plan_arguments(), dry_run=True, requested_by="agent x")
        plan = parse_plan(document)  # the full plan.schema.json
        assert [op.type for op in plan.operations] == [
            "mkdir",
            "move",
            "copy",
            "delete",
            "write",
            "move",
            "delete",
            "delete",
            "write",
            "write",
        ]
        assert plan.operations[2].overwrite and not plan.operations[1].overwrite
        # expect and encoding reach the plan; an expect of nulls and encoding text are unsaid.
        assert plan.operations[5].expect == Expect(size=3, sha256="ab" * 32)
        assert plan.operations[6].expect == Expect(files=0)
        assert plan.operations[7].expect is None and "expect" not in document["operations"][7]
        assert plan.operations[8].content == b"\x00\x01"
        assert "encoding" not in document["operations"][9]
        assert local_refusal(document) is None
        assert document["requested_by"] == "agent x" and "reason" not in document

    def test_the_tool_decides_dry_run_and_requested_by_and_never_undo_of(self) -> None:
        arguments = {
            **strict_plan_arguments(),
            "dry_run": True,
            "requested_by": "someone else",
            "undo_of": "other-plan",
            "reason": "sort the scans",
        }
        document = plan_document(arguments, dry_run=False, requested_by="agent x")
        assert document["dry_run"] is False
        assert document["requested_by"] == "agent x"
        assert "undo_of" not in document
        assert document["reason"] == "sort the scans"

    def test_what_the_loose_schema_lets_through_the_plan_schema_refuses(self) -> None:
        arguments = strict_plan_arguments()
        arguments["operations"] = [
            {
                "type": "mkdir",
                "path": f"{CASE}/x",
                "from": f"{CASE}/y",
                "to": None,
                "content": None,
                "overwrite": None,
            }
        ]
        refusal = local_refusal(plan_document(arguments, dry_run=True, requested_by="a"))
        assert refusal is not None and refusal["status"] == "rejected"
        assert refusal["errors"][0]["code"] == "schema_violation"


class TestMissingArguments:
    """A call that leaves out (or nulls) an argument it needs is told which, before anything
    is sent; not the plan schema's ``None is not of type 'array'``, not an exception."""

    @pytest.fixture(autouse=True)
    def _no_project(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("FILEOPS_PROJECT", raising=False)  # nothing could be sent anyway
        monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)

    @pytest.mark.parametrize("operations", ["left out", None])
    def test_operations(self, operations: Any) -> None:
        preview = file_ops_tools()[0]
        args: dict[str, Any] = {"plan_id": "m-1", "case_name": CASE, "reason": None}
        if operations is None:
            args["operations"] = None
        answer = preview.invoke(tool_call(preview.name, args))
        assert isinstance(answer, ToolMessage)
        document = answer.artifact
        assert (document["status"], document["problem"]) == ("error", "missing_argument")
        assert document["message"] == "operations is required: a list of file operations"
        assert document["sent"] is False and document["exit_code"] == 2
        assert "operations is required: a list of file operations" in answer.content
        assert "None is not of type" not in answer.content

    def test_each_missing_one_is_named_in_the_async_tools_too(self) -> None:
        tools = {tool.name: tool for tool in file_ops_tools()}
        calls = {
            "apply_file_ops": {"operations": [], "reason": None},
            "file_ops_status": {},
            "undo_file_ops": {"plan_id": "m-2", "case_name": CASE},
        }

        async def answers() -> dict[str, ToolMessage]:
            return {
                name: await tools[name].ainvoke(tool_call(name, args))
                for name, args in calls.items()
            }

        documents = {name: answer.artifact for name, answer in asyncio.run(answers()).items()}
        assert documents["apply_file_ops"]["message"] == (
            "plan_id is required: the plan's id (letters, digits, . _ : -); "
            "case_name is required: the case folder the plan works in"
        )
        assert documents["file_ops_status"]["message"].startswith("plan_id is required")
        assert documents["undo_file_ops"]["message"] == (
            "dry_run is required: true to list the changes, false to make them"
        )
        assert all(d["problem"] == "missing_argument" for d in documents.values())
