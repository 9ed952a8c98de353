"""The agent tools' argument schemas: OpenAI strict mode and Anthropic take them, and a plan a
strict model writes (every field present, unused ones null) is a valid plan."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.utils.function_calling import convert_to_openai_tool

from fileops_daemon.client import file_ops_tools, langchain_tool
from fileops_daemon.client.answers import local_refusal
from fileops_daemon.client.toolargs import plan_document
from fileops_daemon.contract.plan import parse_plan
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
    none = {"path": None, "from": None, "to": None, "content": None, "overwrite": None}
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
        ],
    }


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

    def test_the_four_tools_cost_less_than_the_first_one(self) -> None:
        def size(tool: Any) -> int:
            return len(json.dumps(convert_to_openai_tool(tool)))

        assert sum(size(t) for t in file_ops_tools()) < size(langchain_tool())


class TestPlanFromArguments:
    def test_a_strict_models_plan_is_a_valid_plan(self) -> None:
        document = plan_document(strict_plan_arguments(), dry_run=True, requested_by="agent x")
        plan = parse_plan(document)  # the full plan.schema.json
        assert [op.type for op in plan.operations] == ["mkdir", "move", "copy", "delete", "write"]
        assert plan.operations[2].overwrite and not plan.operations[1].overwrite
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
