"""State read back from disk or GCS (journals, ledger checkpoints) is checked before use.

A journal holds the steps an apply runs; anyone who can write the state folder or the state
bucket could plant one. Before any step of a read-back journal runs, it goes through the same
gate as a plan (``paths.confine``, per component, below the plan's own case folder) and must
follow from the plan itself: every step belongs to one of the plan's operations and stays at
or below that operation's paths (or in the plan's own trash for it); a write writes the plan's
content; progress marks name real steps. A state that fails is refused (``state_invalid``)
before anything is touched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.contract.plan import Plan
from fileops_daemon.core.journal import JournalPhase
from fileops_daemon.core.paths import WORK_DIR_NAME, check_case_name, confine, nfc
from fileops_daemon.core.simulate import confine_plan
from fileops_daemon.core.step_kinds import KINDS
from fileops_daemon.core.steps import Parts, Step, StepKind

#: A step's ``version``: an object generation, or a file's size, mtime and optional sha256.
_VERSION = re.compile(r"g:[0-9]{1,20}|m:[0-9]{1,20}:-?[0-9]{1,20}(?::[0-9a-f]{64})?")

__all__ = ["StateInvalidError", "check_journal", "check_ranges"]

#: The kinds a plan expands into (the rest only a rollback makes).
_FORWARD_KINDS = frozenset(kind for kind, rule in KINDS.items() if rule.undo is not None)
_STATES = frozenset(JournalPhase)
_CODES = frozenset(code.value for code in ErrorCode)


class StateInvalidError(PlanError):
    """A journal or checkpoint that does not follow from the plan; nothing was touched."""

    def __init__(self, message: str) -> None:
        super().__init__(
            ErrorCode.STATE_INVALID,
            f"stored apply state refused, nothing touched: {message}",
        )


def _index(value: Any, total: int, what: str) -> int:
    if type(value) is not int or not 0 <= value < total:
        raise StateInvalidError(f"{what} {value!r} is not one of the {total} steps")
    return value


def check_ranges(ranges: Any, total: int, what: str) -> None:
    """Progress as ``[[first, last], ...]`` naming only real steps (a checkpoint's form)."""
    if not isinstance(ranges, list) or len(ranges) > total:
        raise StateInvalidError(f"{what} is not a list of step ranges")
    for item in ranges:
        if not isinstance(item, list) or len(item) != 2:
            raise StateInvalidError(f"{what} holds {item!r}, not a [first, last] range")
        first = _index(item[0], total, what)
        if _index(item[1], total, what) < first:
            raise StateInvalidError(f"{what} holds the empty range {item!r}")


def _under(path: Parts, roots: Iterable[Parts]) -> bool:
    return any(path[: len(root)] == root for root in roots)


def _above(path: Parts, roots: Iterable[Parts]) -> bool:
    return any(root[: len(path)] == path for root in roots)


class _Gate:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.case = nfc(plan.case_name)
        confined, errors = confine_plan(plan)
        if errors:  # the plan itself was refused: no state of it may run
            raise StateInvalidError(f"the plan does not pass the gate: {errors[0].message}")
        self.op_paths = {
            index: [path.parts for path in paths.values()] for index, paths in confined.items()
        }

    def confine_parts(self, parts: Any, step: int) -> Parts:
        """The NFC components of a step path, after the plan's path gate (lexical)."""
        if not isinstance(parts, tuple) or not parts or not all(isinstance(p, str) for p in parts):
            raise StateInvalidError(f"step {step} has a malformed path")
        raw = "/".join((self.case, *parts))
        try:
            if parts[0] == WORK_DIR_NAME:
                # Our own folders: the gate refuses them for plans, so check the rest alone.
                if len(parts) < 4:
                    raise StateInvalidError(f"step {step} names {raw!r}")
                rest = confine("/".join((self.case, *parts[3:])), self.case, operation=step)
                return (WORK_DIR_NAME, *[nfc(p) for p in parts[1:3]], *rest.parts)
            return confine(raw, self.case, operation=step).parts
        except PlanError as exc:
            raise StateInvalidError(f"step {step} fails the path gate: {exc.message}") from exc

    def allowed(self, path: Parts, step: Step, *, parents_ok: bool) -> bool:
        roots = self.op_paths.get(step.operation, [])
        if _under(path, roots) or (parents_ok and _above(path, roots)):
            return True
        own_trash = (WORK_DIR_NAME, self.plan.plan_id, "trash", str(step.operation))
        if path[: len(own_trash)] == own_trash:
            rest = path[len(own_trash) :]
            return not rest or _under(rest, roots) or (parents_ok and _above(rest, roots))
        return False

    def check_step(self, step: Any, number: int) -> None:
        if not isinstance(step, Step) or step.kind not in _FORWARD_KINDS:
            raise StateInvalidError(f"step {number} is not a step a plan expands into")
        operation = _index(step.operation, len(self.plan.operations), f"step {number}'s operation")
        rule = KINDS[step.kind]
        if (step.src is None) == rule.takes_source:
            raise StateInvalidError(f"step {number} ({step.kind}) has a wrong source")
        if step.version is not None and not rule.takes_source:
            raise StateInvalidError(f"step {number} ({step.kind}) pins a source it has not")
        if step.version is not None and not _VERSION.fullmatch(step.version):
            raise StateInvalidError(f"step {number} pins its source with a malformed version")
        writes = step.kind is StepKind.WRITE
        expected = self.plan.operations[operation].content if writes else None
        if step.content != expected:
            raise StateInvalidError(f"step {number} writes other content than the plan")
        folders = rule.on_folder
        for parts in step.touched():
            path = self.confine_parts(parts, number)
            if not self.allowed(path, step, parents_ok=folders):
                shown = "/".join(parts)
                raise StateInvalidError(
                    f"step {number} ({step.kind} {shown!r}) is outside what operation "
                    f"{operation} names"
                )


def check_journal(plan: Plan, state: Any) -> None:
    """Refuse a read-back journal (``JournalState``) that does not follow from ``plan``."""
    header = state.header
    if not isinstance(header, dict):
        raise StateInvalidError("the journal header is not an object")
    if header.get("plan_id") != plan.plan_id or header.get("case_name") != plan.case_name:
        raise StateInvalidError("the journal belongs to another plan")
    folder = header.get("case_folder")
    try:
        ok = isinstance(folder, str) and nfc(check_case_name(folder)) == nfc(plan.case_name)
    except PlanError:
        ok = False
    if not ok:
        raise StateInvalidError(f"the journal's case folder {folder!r} is not the plan's case")
    gate = _Gate(plan)
    total = len(state.steps)
    for number, step in enumerate(state.steps):
        gate.check_step(step, number)
    for index in (*state.done, *state.undone):
        _index(index, total, "a progress mark")
    if state.state not in _STATES:
        raise StateInvalidError(f"unknown journal state {state.state!r}")
    info = state.info
    if not isinstance(info, dict):
        raise StateInvalidError("the journal's state details are not an object")
    if "code" in info and info["code"] not in _CODES:
        raise StateInvalidError(f"unknown error code {info['code']!r}")
    for index in info.get("half_run", []):
        _index(index, total, "a half-run step")
    if "step" in info:
        _index(info["step"], total, "the failed step")
    if "operation" in info:
        _index(info["operation"], len(plan.operations), "the failed operation")
    if not all(isinstance(item, str) for item in info.get("remaining", [])):
        raise StateInvalidError("the journal's remaining steps are not text")
    if not isinstance(info.get("message", ""), str):
        raise StateInvalidError("the journal's failure message is not text")
