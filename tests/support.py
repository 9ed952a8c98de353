"""Helpers shared by the tests: tree snapshots, plan builders, one-call apply."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from fileops_daemon.contract.plan import load_schema, parse_plan
from fileops_daemon.core.execute import RetryPolicy, apply_plan

CASE = "Abby-Sitgraves-MVA-07-13-2024"
NO_WAIT = RetryPolicy(attempts=3, initial_wait=0, max_wait=0)


def snapshot(root: Path, *, skip_work_dirs: bool = False) -> dict[str, tuple[str, ...]]:
    """Every file (sha256), folder and link (target) below ``root``, by relative path."""
    entries: dict[str, tuple[str, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        if skip_work_dirs:
            dirnames[:] = [d for d in dirnames if d not in (".fileops", ".fileops-state")]
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if os.path.islink(full):
                entries[rel] = ("link", os.readlink(full))
            elif os.path.isdir(full):
                entries[rel] = ("dir",)
            elif os.path.isfile(full):
                entries[rel] = ("file", hashlib.sha256(Path(full).read_bytes()).hexdigest())
            else:  # a FIFO or socket: reading it would block
                entries[rel] = ("special",)
    return entries


def plan_doc(
    operations: list[dict[str, Any]],
    *,
    plan_id: str = "p-1",
    case: str = CASE,
    dry_run: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "plan_id": plan_id,
        "case_name": case,
        "dry_run": dry_run,
        "operations": operations,
        **extra,
    }


#: The seed plan's two operations (the sample case holds their sources).
SEED_OPS: list[dict[str, Any]] = [
    {"type": "mkdir", "path": f"{CASE}/Investigation/photos"},
    {
        "type": "move",
        "from": f"{CASE}/uncategorized/file1.pdf",
        "to": f"{CASE}/Medical Records/file1.pdf",
    },
]


def notes_ops(count: int) -> list[dict[str, Any]]:
    """A folder ``notes`` and ``count`` small files in it: one cheap step each."""
    return [{"type": "mkdir", "path": f"{CASE}/notes"}] + [
        {"type": "write", "path": f"{CASE}/notes/n{i:03}.txt", "content": f"note {i}"}
        for i in range(count)
    ]


def twin_tree(root: Path, where: Path) -> Path:
    """A copy of ``root`` (links kept as links), to apply the same plan to another way."""
    twin = where / "twin"
    shutil.copytree(root, twin, symlinks=True)
    return twin


def apply_doc(
    document: dict[str, Any],
    root: Path,
    state: Path,
    *,
    undo_of: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Parse and apply; ``undo_of`` parses the document as fileops' own undo plan of that id."""
    kwargs.setdefault("retry", NO_WAIT)
    plan = parse_plan(document, undo_of=undo_of)
    result = apply_plan(plan, str(root), str(state), **kwargs).result
    assert_valid_result(result)
    return result


def assert_valid_result(result: dict[str, Any]) -> None:
    validator = Draft202012Validator(load_schema("result"), format_checker=FormatChecker())
    errors = sorted(validator.iter_errors(result), key=str)
    assert not errors, [e.message for e in errors]


def error_codes(result: dict[str, Any]) -> list[str]:
    return [error["code"] for error in result["errors"]]


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path
