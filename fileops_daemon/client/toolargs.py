"""The agent tools' argument schemas, and the plan each call's arguments stand for.

Written for OpenAI's strict function calling and Anthropic's ``input_schema`` at once: every
object lists all its properties as required and forbids others, an unused field is ``null``
rather than absent, and none of allOf/if/then/propertyNames/patternProperties/default/formats
appear. They are deliberately loose where the plan schema is strict (which fields an operation
type takes, path patterns, lengths): the daemon checks every plan against the full
plan.schema.json and answers with the code and message a model can fix its plan by.

Left out on purpose: ``undo_of`` (reserved for the undo plans fileops builds itself),
``requested_by`` (the tool sets it from its own configuration) and ``dry_run`` on plans (which
tool is called decides). An operation's ``encoding`` and ``expect`` are offered, nullable like
every field: null (or ``encoding`` "text", an ``expect`` of nulls) is the same as leaving
them out.

A call that leaves out, or sends as null, an argument the schema does not let be null is
answered before anything is sent, naming it (:func:`missing_arguments`, ``ARGUMENT_MEANING``):
not with the plan schema's ``None is not of type 'array'``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "ARGUMENT_MEANING",
    "PLAN_ARGS",
    "STATUS_ARGS",
    "UNDO_ARGS",
    "missing_arguments",
    "plan_document",
]


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


def _strict_object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


#: An operation's ``expect``: plan.schema.json's, every field nullable, the whole nullable.
_EXPECT: Final = _strict_object(
    {
        "size": _nullable("integer"),
        "sha256": _nullable("string"),
        "files": _nullable("integer"),
    }
) | {"type": ["object", "null"]}

# Which operation takes which field is said once, in the preview tool's description: every
# word here is sent with every model call, for each tool.
_OPERATION: Final = _strict_object(
    {
        "type": {"type": "string", "enum": ["mkdir", "move", "copy", "delete", "write"]},
        "path": _nullable("string"),
        "from": _nullable("string"),
        "to": _nullable("string"),
        "content": _nullable("string"),
        "encoding": {"type": ["string", "null"], "enum": ["text", "base64", None]},
        "overwrite": _nullable("boolean"),
        "expect": _EXPECT,
    }
)

#: preview_file_ops and apply_file_ops: one plan.
PLAN_ARGS: Final = _strict_object(
    {
        "plan_id": {"type": "string", "description": "Your new id: letters, digits, . _ : -"},
        "case_name": {"type": "string"},
        "operations": {"type": "array", "items": _OPERATION},
        "reason": _nullable("string"),
    }
)

#: file_ops_status.
STATUS_ARGS: Final = _strict_object({"plan_id": {"type": "string"}})

#: undo_file_ops.
UNDO_ARGS: Final = _strict_object(
    {
        "plan_id": {"type": "string", "description": "The applied plan to undo."},
        "case_name": {"type": "string"},
        "dry_run": {"type": "boolean"},
    }
)


#: What each argument no tool call may leave out (or send as null) is, for the answer to a
#: call that does.
ARGUMENT_MEANING: Final = {
    "plan_id": "the plan's id (letters, digits, . _ : -)",
    "case_name": "the case folder the plan works in",
    "operations": "a list of file operations",
    "dry_run": "true to list the changes, false to make them",
}


def missing_arguments(arguments: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """The arguments ``schema`` does not let be null that ``arguments`` leaves out or sets to
    null, in the schema's order."""
    return [
        name
        for name, spec in schema["properties"].items()
        if "null" not in _types(spec) and arguments.get(name) is None
    ]


def _types(spec: Mapping[str, Any]) -> list[str]:
    kind = spec.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def _operation(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """An operation without the nulls a strict model fills unused fields with."""
    operation = {key: value for key, value in arguments.items() if value is not None}
    if operation.get("overwrite") is False:
        del operation["overwrite"]  # the default; mkdir and delete do not even take it
    if operation.get("encoding") == "text":
        del operation["encoding"]  # the default; only write takes it
    expect = operation.get("expect")
    if isinstance(expect, Mapping):
        expect = {key: value for key, value in expect.items() if value is not None}
        if expect:
            operation["expect"] = expect
        else:  # nothing expected: the plan schema wants at least one field, or none
            del operation["expect"]
    return operation


def plan_document(
    arguments: Mapping[str, Any], *, dry_run: bool, requested_by: str
) -> dict[str, Any]:
    """The plan a preview or apply call's arguments describe.

    Only the fields the schema offers are taken (a model's extra ones are dropped here, the
    daemon refuses whatever else is wrong); odd values are passed on for the daemon to name.
    """
    operations = arguments.get("operations")
    document: dict[str, Any] = {
        "plan_id": arguments.get("plan_id"),
        "case_name": arguments.get("case_name"),
        "dry_run": dry_run,
        "requested_by": requested_by,
        "operations": [
            _operation(item) if isinstance(item, Mapping) else item for item in operations
        ]
        if isinstance(operations, list)
        else operations,
    }
    if arguments.get("reason") is not None:
        document["reason"] = arguments["reason"]
    return document
