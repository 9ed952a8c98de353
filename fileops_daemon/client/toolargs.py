"""The agent tools' argument schemas, and the plan each call's arguments stand for.

Written for OpenAI's strict function calling and Anthropic's ``input_schema`` at once: every
object lists all its properties as required and forbids others, an unused field is ``null``
rather than absent, and none of allOf/if/then/propertyNames/patternProperties/default/formats
appear. They are deliberately loose where the plan schema is strict (which fields an operation
type takes, path patterns, lengths): the daemon checks every plan against the full
plan.schema.json and answers with the code and message a model can fix its plan by.

Left out on purpose: ``undo_of`` (reserved for the undo plans fileops builds itself),
``requested_by`` (the tool sets it from its own configuration), ``dry_run`` on plans (which
tool is called decides), and the rarely useful ``encoding`` and ``expect``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "PLAN_ARGS",
    "STATUS_ARGS",
    "UNDO_ARGS",
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


# Which operation takes which field is said once, in the preview tool's description: every
# word here is sent with every model call, for each tool.
_OPERATION: Final = _strict_object(
    {
        "type": {"type": "string", "enum": ["mkdir", "move", "copy", "delete", "write"]},
        "path": _nullable("string"),
        "from": _nullable("string"),
        "to": _nullable("string"),
        "content": _nullable("string"),
        "overwrite": _nullable("boolean"),
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


def _operation(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """An operation without the nulls a strict model fills unused fields with."""
    operation = {key: value for key, value in arguments.items() if value is not None}
    if operation.get("overwrite") is False:
        del operation["overwrite"]  # the default; mkdir and delete do not even take it
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
